"""Singular values of the weight matrices themselves (not of the loss's Hessian).

For every 2-D weight W inside a decoder layer (attention and MLP matrices: q/k/v/o and
gate/up/down in Llama, ``attn.c_attn`` / ``mlp.c_fc`` in GPT-2, ``attention.query_key_value``
in GPT-NeoX, ...), its singular values sigma_1 >= ... >= sigma_r (r = min of its two sizes)
and its condition number

    kappa(W) = sigma_max / sigma_min     (inf when W is rank deficient),

computed in float64 whatever the weights' dtype. Singular values do not depend on the
orientation, so a Conv1D weight stored [in, out] (GPT-2) needs no transpose. A fused matrix
(GPT-2's ``c_attn``, GPT-NeoX's ``query_key_value``, Phi3's ``qkv_proj``: q, k and v stacked)
is reported as the one matrix it is, not split per projection. A spectrum file also stores
these for its targeted matrices (``llmscape.curvature.spectrum``).

The matrices are found by name: a weight ``<prefix>.<i>.<matrix>.weight`` with ``prefix`` the
decoder layers' (``model.layers``, ``transformer.h``; llmscape.architecture.layer_prefix), or,
without a prefix, the first numbered component of the name.
"""

from __future__ import annotations

import numpy as np
import torch

from llmscape.errors import LlmscapeError

# The Llama family's matrices, for reference: every family's 2-D layer weights are found by name (layer_matrices).
WEIGHT_MATRICES = (
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
)


def _parse(name: str, prefix: str | None) -> tuple[int, str] | None:
    """(layer index, matrix name within the layer) of a layer's ``.weight``, else None."""
    from llmscape.architecture import within_layer

    within = within_layer(name, prefix)
    if within is None or not within[1].endswith(".weight"):
        return None
    return within[0], within[1].removesuffix(".weight")


def layer_matrices(shapes: dict[str, tuple[int, ...]], prefix: str | None = None) -> list[str]:
    """The names of the 2-D weights inside decoder layers (embedding and head excluded)."""
    return [n for n, s in shapes.items() if len(s) == 2 and _parse(n, prefix) is not None]


def weight_spectra(
    source: torch.nn.Module | dict[str, torch.Tensor], prefix: str | None = None
) -> dict[str, np.ndarray]:
    """Singular values (descending, float64) of every 2-D weight inside the decoder layers.

    ``source``: a model (its layer prefix is found from it) or {name: tensor}.
    """
    if isinstance(source, torch.nn.Module):
        from llmscape.architecture import layout_of

        prefix = prefix or layout_of(source).prefix
        tensors = dict(source.named_parameters())
    else:
        tensors = source
    shapes = {n: tuple(t.shape) for n, t in tensors.items()}
    out = {
        n: torch.linalg.svdvals(tensors[n].detach().to(torch.float64)).numpy() for n in layer_matrices(shapes, prefix)
    }
    if not out:
        raise LlmscapeError(
            f"no 2-D weight inside a decoder layer found for weight spectra; names look like {list(tensors)[:4]}"
        )
    return out


def condition_number(singular_values: np.ndarray) -> float:
    s = np.asarray(singular_values)
    return float(s[0] / s[-1]) if s[-1] > 0 else float("inf")


def weight_spectra_table(spectra: dict[str, np.ndarray], prefix: str | None = None):
    """One row per matrix: layer, matrix (its name within the layer), rank, sigma_max, sigma_min, condition number."""
    import pandas as pd

    rows = []
    for name, s in spectra.items():
        parsed = _parse(name, prefix)
        rows.append(
            {
                "tensor": name,
                "layer": parsed[0] if parsed else None,
                "matrix": parsed[1] if parsed else None,
                "rank": len(s),
                "sigma_max": float(s[0]),
                "sigma_min": float(s[-1]),
                "condition_number": condition_number(s),
            }
        )
    return pd.DataFrame(rows)
