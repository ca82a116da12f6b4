"""The loss along extreme-curvature directions of one layer entry, beside its quadratic prediction.

For a unit direction v over the targets (flattened and concatenated in the spectrum file's
``targets`` order) and its curvature lambda_v = v^T H v,

    f_v(a) = L(theta* + a v),        q_v(a) = L(theta*) + lambda_v a^2 / 2,

where q_v is the quadratic prediction as the issue states it: the second-order Taylor term
without the first-order one (theta* is not a minimum of the evaluation loss, so f_v also
has a slope g . v at 0, which shows as the curve's tilt against q_v; llmscape.geometry.gradients
measures |g|). The three directions come from the seed study's spectrum file
(``curvature.vectors: true``, llmscape.curvature.spectrum): ``lambda_max`` (the top
eigenvector), ``lambda_min`` (the most negative one: a saddle direction when lambda < 0) and
``near_zero`` (the top-k Lanczos run's Ritz vector nearest 0; lambda_v is its Rayleigh
quotient, stored with the residual, as no Ritz vector inside the spectrum is an exact
eigenvector). All three curves come from one grid engine (llmscape.engine, three axes: point
(a, 0, 0) is f along the first), so the prefix reuse and batching of the landscapes apply.

Curves file (kind ``curves``): ``axis`` [A] the coefficients a; ``loss/<name>`` [A] f_v and
``quadratic/<name>`` [A] q_v per direction; per-direction attrs ``curvature`` (lambda_v),
``residual``; root attrs ``directions`` (names in order), ``loss_centre``, ``provenance``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from llmscape import h5io
from llmscape.errors import LlmscapeError

DIRECTIONS = ("lambda_max", "lambda_min", "near_zero")


def split_flat(flat: np.ndarray, shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """A flat vector over the targets (``shapes`` order) as one float32 tensor per target."""
    out, offset = {}, 0
    for name, shape in shapes.items():
        size = math.prod(shape)
        out[name] = torch.from_numpy(np.ascontiguousarray(flat[offset : offset + size])).reshape(shape).float()
        offset += size
    if offset != flat.size:
        raise LlmscapeError(f"a direction of {flat.size} values does not fit targets of {offset} parameters")
    return out


def axis_points(coeffs: np.ndarray, n_axes: int) -> np.ndarray:
    """Grid points [n_axes * A, n_axes]: along axis i the coefficients, 0 on every other axis."""
    pts = np.zeros((n_axes * len(coeffs), n_axes))
    for i in range(n_axes):
        pts[i * len(coeffs) : (i + 1) * len(coeffs), i] = coeffs
    return pts


def curves(engine, n_tokens: np.ndarray, coeffs: np.ndarray, n_axes: int) -> tuple[np.ndarray, float]:
    """f along each of an engine's ``n_axes`` directions [n_axes, A], and f(0)."""
    from llmscape.loss import metrics

    pts = np.vstack([np.zeros((1, n_axes)), axis_points(coeffs, n_axes)])
    loss = metrics(engine.evaluate(pts), n_tokens)["loss"]
    return loss[1:].reshape(n_axes, len(coeffs)), float(loss[0])


def save_curves(path: str | Path, coeffs, names, losses, curvatures, residuals, centre, provenance) -> None:
    with h5io.write(path, "curves") as f:
        f.create_dataset("axis", data=np.asarray(coeffs, dtype=np.float64))
        for name, loss, lam, res in zip(names, losses, curvatures, residuals, strict=True):
            ds = f.create_dataset(f"loss/{name}", data=np.asarray(loss, dtype=np.float64))
            h5io.set_attrs(ds, {"curvature": float(lam), "residual": float(res)})
            f.create_dataset(f"quadratic/{name}", data=centre + lam * np.asarray(coeffs) ** 2 / 2)
        h5io.set_attrs(f, {"directions": list(names), "loss_centre": float(centre), "provenance": provenance})


def load_curves(path: str | Path) -> dict:
    """A curves file: ``axis``, ``names``, ``loss``/``quadratic``/``curvature``/``residual`` per name, ``attrs``."""
    with h5io.read(path, "curves") as f:
        a = h5io.get_attrs(f)
        names = a["directions"]
        return {
            "axis": f["axis"][...],
            "names": names,
            "loss": {n: f[f"loss/{n}"][...] for n in names},
            "quadratic": {n: f[f"quadratic/{n}"][...] for n in names},
            "curvature": {n: float(f[f"loss/{n}"].attrs["curvature"]) for n in names},
            "residual": {n: float(f[f"loss/{n}"].attrs["residual"]) for n in names},
            "attrs": a,
        }
