"""Singular values of the weight matrices themselves (not of the loss's Hessian).

For a decoder layer's attention or MLP matrix W (q/k/v/o, gate/up/down), its singular
values sigma_1 >= ... >= sigma_r (r = min of its two sizes) and its condition number

    kappa(W) = sigma_max / sigma_min     (inf when W is rank deficient),

computed in float64 whatever the weights' dtype. A spectrum file also stores these for
its targeted matrices (``llmscape.curvature.spectrum``).
"""

from __future__ import annotations

import re

import numpy as np
import torch

from llmscape.errors import LlmscapeError

WEIGHT_MATRICES = (
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
)
# a decoder layer's attention/MLP matrix; groups: layer index, matrix kind
WEIGHT_NAME = re.compile(r"layers\.(\d+)\.(" + "|".join(re.escape(m) for m in WEIGHT_MATRICES) + r")\.weight$")


def weight_spectra(source: torch.nn.Module | dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Singular values (descending, float64) of every decoder layer's q/k/v/o and gate/up/down matrices."""
    tensors = dict(source.named_parameters()) if isinstance(source, torch.nn.Module) else source
    out = {}
    for name, t in tensors.items():
        if WEIGHT_NAME.search(name) and t.dim() == 2:
            out[name] = torch.linalg.svdvals(t.detach().to(torch.float64)).numpy()
    if not out:
        raise LlmscapeError("no decoder-layer attention/MLP weight matrices found for weight spectra")
    return out


def condition_number(singular_values: np.ndarray) -> float:
    s = np.asarray(singular_values)
    return float(s[0] / s[-1]) if s[-1] > 0 else float("inf")


def weight_spectra_table(spectra: dict[str, np.ndarray]):
    """One row per matrix: layer, matrix kind, shape rank, sigma_max, sigma_min, condition number."""
    import pandas as pd

    rows = []
    for name, s in spectra.items():
        m = WEIGHT_NAME.search(name)
        rows.append(
            {
                "tensor": name,
                "layer": int(m.group(1)) if m else None,
                "matrix": m.group(2) if m else None,
                "rank": len(s),
                "sigma_max": float(s[0]),
                "sigma_min": float(s[-1]),
                "condition_number": condition_number(s),
            }
        )
    return pd.DataFrame(rows)
