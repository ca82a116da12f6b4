"""How far theta* is from a stationary point of the evaluation loss: gradient norms per tensor and per layer.

For each parameter tensor W of the model (tied weights counted once), with g = dL/dW at theta*
for the landscape loss L of ``llmscape.loss`` over the evaluation set,

    ||g||_F,     ||W||_F,     rho = ||g||_F / ||W||_F,

rho being the relative size of one gradient step of unit learning rate. Per decoder layer l
(``llmscape.architecture``'s layer discovery, any family) the same over the concatenation
of its tensors: ||g_l|| = sqrt(sum_W in l ||g_W||^2), likewise ||W_l||; tensors outside the
layers (embeddings, final norm, head) get their own rows with ``layer`` empty. theta* is a
minimum of the training objective at best, not of this small evaluation set's loss, so
||g|| > 0 here; rho says how far from stationary the point is that the landscapes centre on.
The gradient is ``llmscape.curvature.TargetLoss.gradient`` (chunked head, float64 token
weights), one backward over the set.
"""

from __future__ import annotations

import math

import pandas as pd
import torch

from llmscape.architecture import layout_of
from llmscape.curvature import TargetLoss
from llmscape.data import EvalSet


def gradient_norms(model: torch.nn.Module, data: EvalSet, names: list[str] | None = None) -> pd.DataFrame:
    """One row per tensor: tensor, layer (index or None), matrix (name within the layer), n_params,
    grad_norm, weight_norm, relative (grad_norm / weight_norm). ``names``: all parameters by default."""
    params = dict(model.named_parameters())
    names = list(params) if names is None else list(names)
    grads = TargetLoss(model, data, names).gradient()
    layout = layout_of(model)
    rows = []
    for name in names:
        split = layout.split(name)
        g, w = grads[name].double().norm().item(), params[name].detach().double().norm().item()
        rows.append(
            {
                "tensor": name,
                "layer": None if split is None else split[0],
                "matrix": name if split is None else split[1].removesuffix(".weight"),
                "n_params": params[name].numel(),
                "grad_norm": g,
                "weight_norm": w,
                "relative": g / w if w > 0 else math.inf,
            }
        )
    return pd.DataFrame(rows)


def per_layer(table: pd.DataFrame) -> pd.DataFrame:
    """The tensor table summed per decoder layer (norms as root sums of squares); outside tensors one row each."""
    rows = []
    inside = table[table["layer"].notna()]
    for layer, group in inside.groupby("layer", sort=True):
        g, w = math.sqrt((group.grad_norm**2).sum()), math.sqrt((group.weight_norm**2).sum())
        rows.append({"layer": int(layer), "part": "layer", "n_params": int(group.n_params.sum()),
                     "grad_norm": g, "weight_norm": w, "relative": g / w if w else math.inf})  # fmt: skip
    for _, r in table[table["layer"].isna()].iterrows():
        rows.append({"layer": None, "part": r.tensor, "n_params": int(r.n_params), "grad_norm": r.grad_norm,
                     "weight_norm": r.weight_norm, "relative": r.relative})  # fmt: skip
    return pd.DataFrame(rows)
