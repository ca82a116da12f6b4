"""Decoder-layer inputs of a Llama-style model, prepared as ``LlamaModel.forward`` prepares them.

The fast engine (engine/fast.py) and the curvature loss's prefix cache (curvature/target_loss.py)
do not call the model's forward: they run the decoder layers themselves (from a cached
prefix, one layer at a time), so they must build what each layer receives exactly as
the model would. These helpers are that one place. They mirror ``LlamaModel.forward``
of transformers 5.23 (models/llama/modeling_llama.py) for a right-padded batch without
a KV cache: position ids 0..T-1 shared by every row, the causal mask from
``create_causal_mask``, and each layer called with the mask, the rotary embeddings
(``model.model.rotary_emb(hidden, position_ids=...)``) and the position ids.
"""

from __future__ import annotations

import torch


def position_ids(t: int, device) -> torch.Tensor:
    """Position ids [1, t]: 0..t-1, shared by the right-padded rows (no cache, so no offset)."""
    return torch.arange(t, device=device).unsqueeze(0)


def causal_mask(config, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor):
    """The decoder layers' attention mask, from ``transformers.masking_utils.create_causal_mask``."""
    from transformers.masking_utils import create_causal_mask

    return create_causal_mask(
        config=config,
        inputs_embeds=inputs_embeds,
        attention_mask=attention_mask,
        past_key_values=None,
        position_ids=position_ids,
    )


def run_layer(layer, hidden: torch.Tensor, mask, position_embeddings, position_ids: torch.Tensor) -> torch.Tensor:
    """One decoder layer's output hidden states (older layers return a tuple; its first item)."""
    out = layer(hidden, attention_mask=mask, position_embeddings=position_embeddings, position_ids=position_ids)
    return out[0] if isinstance(out, tuple) else out
