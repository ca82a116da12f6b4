"""Decoder-layer inputs of a Llama-style model, built as ``LlamaModel.forward`` builds them.

Used where the model cannot be run to record its layer calls (llmscape.architecture records
them otherwise): the streaming fast engine (engine/streaming.py), whose model is an empty
skeleton with one decoder layer resident at a time. These helpers mirror ``LlamaModel.forward``
of transformers 5.23 (models/llama/modeling_llama.py) for a right-padded batch without a KV
cache: position ids 0..T-1 shared by every row, the causal mask from ``create_causal_mask``,
and each layer called with the mask, the rotary embeddings
(``model.model.rotary_emb(hidden, position_ids=...)``) and the position ids; the hidden
states entering layer 0 are the embedding's output and the final norm is ``model.model.norm``.

That holds for the families in ``STREAMABLE`` only while every layer attends causally over the
whole sequence: a sliding window shorter than the sequence needs another mask
(``streaming_problem`` says so).
"""

from __future__ import annotations

import torch

from llmscape.architecture import LayerCalls

# families whose forward is LlamaModel's (embedding -> layers(mask, rotary, position ids) -> norm),
# tested in tests/test_families.py
STREAMABLE = ("llama", "mistral", "qwen2", "qwen3", "olmo")


def streaming_problem(model: torch.nn.Module, width: int) -> str | None:
    """Why a model cannot have its layer inputs built the Llama way for sequences of ``width`` tokens, or None."""
    config = model.config
    kind = getattr(config, "model_type", "?")
    if kind not in STREAMABLE:
        return f"model type {kind!r} is not one of the Llama-layout families {STREAMABLE}"
    inner = getattr(model, "model", None)
    for attr in ("layers", "norm", "rotary_emb", "embed_tokens"):
        if not hasattr(inner, attr):
            return f"{type(model).__name__} lacks model.model.{attr}"
    layer_types = set(getattr(config, "layer_types", None) or ["full_attention"])
    window = getattr(config, "sliding_window", None)
    sliding = layer_types != {"full_attention"} or (kind == "mistral" and window is not None)
    if sliding and window is not None and window < width:
        return f"sliding-window attention (window {window}) over sequences of {width} tokens"
    return None


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


def layer_calls(model: torch.nn.Module, embeds: torch.Tensor, attention_mask: torch.Tensor) -> LayerCalls:
    """Every decoder layer's call for a batch whose embeddings are ``embeds`` [B, T, H], as LlamaModel makes it."""
    inner = model.model
    pos = position_ids(embeds.shape[1], embeds.device)
    mask = causal_mask(model.config, embeds, attention_mask, pos)
    kwargs = {
        "attention_mask": mask,
        "position_embeddings": inner.rotary_emb(embeds, position_ids=pos),
        "position_ids": pos,
    }
    return LayerCalls([((), kwargs, True)] * len(inner.layers), embeds.shape[0])
