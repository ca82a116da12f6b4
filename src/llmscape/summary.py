"""Numbers that describe a landscape: centre loss, extremes, mean rise at given radii, basin size."""

from __future__ import annotations

import numpy as np
import pandas as pd

from llmscape.store import Landscape

N_ANGLES = 64


def interpolate(ls: Landscape, coords: np.ndarray) -> np.ndarray:
    """Linear (1-D) or bilinear (2-D) interpolation of the loss at points [M, dims]; NaN outside."""
    coords = np.atleast_2d(coords)
    out = np.full(len(coords), np.nan)
    if len(ls.axes) == 1:
        a = ls.axes[0]
        inside = (coords[:, 0] >= a[0]) & (coords[:, 0] <= a[-1])
        out[inside] = np.interp(coords[inside, 0], a, ls.loss)
        return out
    a, b = ls.axes
    x, y = coords[:, 0], coords[:, 1]
    inside = (x >= a[0]) & (x <= a[-1]) & (y >= b[0]) & (y <= b[-1])
    fi, fj = np.interp(x, a, np.arange(len(a))), np.interp(y, b, np.arange(len(b)))  # fractional indices
    i0 = np.clip(np.floor(fi).astype(int), 0, max(len(a) - 2, 0))
    j0 = np.clip(np.floor(fj).astype(int), 0, max(len(b) - 2, 0))
    i1, j1 = np.minimum(i0 + 1, len(a) - 1), np.minimum(j0 + 1, len(b) - 1)
    ta, tb = fi - i0, fj - j0
    z = ls.loss
    value = (
        (1 - ta) * (1 - tb) * z[i0, j0] + ta * (1 - tb) * z[i1, j0] + (1 - ta) * tb * z[i0, j1] + ta * tb * z[i1, j1]
    )
    out[inside] = value[inside]
    return out


def circle(dims: int, r: float) -> np.ndarray:
    """Points at distance r from the centre: +-r in 1-D, N_ANGLES on a circle in 2-D."""
    if dims == 1:
        return np.array([[-r], [r]])
    t = np.linspace(0, 2 * np.pi, N_ANGLES, endpoint=False)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def basin_radius(ls: Landscape, rise: float, n_radii: int = 200) -> float:
    """Largest r such that the mean loss on every circle of radius <= r stays within ``rise``
    of the centre; NaN when the grid cannot tell (the basin reaches past the grid)."""
    centre = interpolate(ls, np.zeros((1, len(ls.axes))))[0]
    r_max = min(min(abs(a[0]), abs(a[-1])) for a in ls.axes)
    radii = np.linspace(0, r_max, n_radii + 1)[1:]
    for prev, r in zip(np.concatenate([[0.0], radii[:-1]]), radii, strict=True):
        if not np.nanmean(interpolate(ls, circle(len(ls.axes), r))) - centre <= rise:
            return float(prev)
    return float("nan")


def describe(ls: Landscape, radii: list[float], basin_rise: float = 0.1) -> dict:
    """One summary row for a landscape."""
    centre = float(interpolate(ls, np.zeros((1, len(ls.axes))))[0])
    finite = ls.loss[np.isfinite(ls.loss)]
    row = {
        "loss_centre": centre,
        "loss_min": float(finite.min()) if finite.size else float("nan"),
        "loss_max": float(finite.max()) if finite.size else float("nan"),
        "n_nonfinite": int((~np.isfinite(ls.loss)).sum()),
        "accuracy_centre": float(ls.accuracy.ravel()[np.argmin(np.abs(points_norm(ls)))]),
    }
    for r in radii:
        row[f"rise_r{r:g}"] = float(np.nanmean(interpolate(ls, circle(len(ls.axes), r))) - centre)
    row[f"basin_radius_{basin_rise:g}"] = basin_radius(ls, basin_rise)
    return row


def points_norm(ls: Landscape) -> np.ndarray:
    """Distance of every grid point from the centre (grid shape)."""
    mesh = np.meshgrid(*ls.axes, indexing="ij")
    return np.sqrt(sum(m**2 for m in mesh))


def summary_table(rows: list[tuple[dict, Landscape]], radii: list[float]) -> pd.DataFrame:
    """A DataFrame with one row per landscape; ``rows`` pairs identifying columns with landscapes."""
    return pd.DataFrame([{**ident, **describe(ls, radii)} for ident, ls in rows])
