"""Landscape directions: a dict {parameter name: tensor} per axis, stored in HDF5.

Random directions are drawn with numpy's PCG64 from a seed mixed with the axis and
parameter name, on the CPU in float32. The draw is therefore identical on any device,
with any thread count, and does not depend on which other tensors are targeted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from pathlib import Path

import numpy as np
import torch

from llmscape import h5io
from llmscape.errors import LlmscapeError

Direction = dict[str, torch.Tensor]
NORMS = ("filter", "layer", "model", "gaussian", "none")


def _stream_seed(seed: int, axis: int, name: str) -> int:
    digest = hashlib.sha256(f"{seed}:{axis}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def gaussian(shapes: dict[str, tuple[int, ...]], seed: int, axis: int) -> Direction:
    return {
        name: torch.from_numpy(
            np.random.default_rng(_stream_seed(seed, axis, name)).standard_normal(shape, dtype=np.float32)
        )
        for name, shape in shapes.items()
    }


def normalize(direction: Direction, weights: Direction, norm: str, transposed: Collection[str] = ()) -> Direction:
    """Rescale a direction to the weights' scale (Li et al. 2018 and variants).

    filter: each output unit (filter) of a matrix gets the norm of the same unit of the
            weights: row i (dim 0) of an nn.Linear weight [out, in], column i of the
            matrices named in ``transposed`` (transformers' Conv1D, GPT-2: stored [in, out],
            llmscape.architecture.Layout.transposed); 1-D tensors are treated as one unit.
    layer:  each tensor gets the norm of its weight tensor.
    model:  the whole direction gets the norm of all targeted weights together.
    gaussian: the whole direction gets norm sqrt(P), P its number of entries: the expected
            norm of a raw N(0, I) draw (Chen et al. 2025's convention), so that a random
            direction, a worst-case direction and a checkpoint delta scaled this way all
            compare with adding a * N(0, I) noise to the targeted weights.
    none:   unchanged.
    Norms are taken in float64 so that the scale does not depend on the model dtype.
    """
    if norm not in NORMS:
        raise LlmscapeError(f"normalization must be one of {NORMS}, got {norm!r}")
    if norm == "none":
        return dict(direction)
    if norm == "gaussian":
        n = sum(t.numel() for t in direction.values())
        d = torch.sqrt(sum(t.double().pow(2).sum() for t in direction.values()))
        return {k: (t.double() * (n**0.5 / d.clamp_min(1e-30))).float() for k, t in direction.items()}
    if norm == "model":
        w = torch.sqrt(sum(weights[n].double().pow(2).sum() for n in direction))
        d = torch.sqrt(sum(t.double().pow(2).sum() for t in direction.values()))
        return {n: (t.double() * (w / d)).float() for n, t in direction.items()}
    out = {}
    for name, d in direction.items():
        w = weights[name].double()
        dd = d.double()
        if norm == "filter" and dd.dim() >= 2:
            flip = name in transposed
            if flip:  # output units as rows
                w, dd = w.t(), dd.t()
            wn = w.reshape(w.shape[0], -1).norm(dim=1)
            dn = dd.reshape(dd.shape[0], -1).norm(dim=1)
            scale = (wn / dn.clamp_min(1e-30)).reshape(-1, *([1] * (dd.dim() - 1)))
            if flip:
                out[name] = (dd * scale).t().contiguous().float()
                continue
        else:
            scale = w.norm() / dd.norm().clamp_min(1e-30)
        out[name] = (dd * scale).float()
    return out


def random_directions(
    weights: Direction, n_axes: int, seed: int, norm: str, transposed: Collection[str] = ()
) -> list[Direction]:
    """Gaussian directions over ``weights``' tensors, normalized per ``norm`` (``transposed``: see ``normalize``)."""
    shapes = {n: tuple(w.shape) for n, w in weights.items()}
    return [normalize(gaussian(shapes, seed, axis), weights, norm, transposed) for axis in range(n_axes)]


def directions_sha256(directions: list[Direction]) -> str:
    h = hashlib.sha256()
    for axis, d in enumerate(directions):
        for name in sorted(d):
            h.update(f"{axis}:{name}".encode())
            h.update(d[name].contiguous().numpy().tobytes())
    return h.hexdigest()


def save_directions(path: str | Path, directions: list[Direction], recipe: dict, extra: dict | None = None) -> None:
    """Layout: /axis<k>/<parameter name> float32 datasets; attrs recipe (JSON), n_axes, sha256.

    ``extra`` holds named 1-D arrays stored beside them (e.g. Hessian eigenvalues).
    """
    with h5io.write(path, "directions") as f:
        for axis, d in enumerate(directions):
            g = f.create_group(f"axis{axis}")
            for name, t in d.items():
                g.create_dataset(name, data=t.float().numpy())
        for key, value in (extra or {}).items():
            f.create_dataset(key, data=np.asarray(value))
        h5io.set_attrs(f, {"recipe": recipe, "n_axes": len(directions), "sha256": directions_sha256(directions)})


def load_directions(path: str | Path) -> tuple[list[Direction], dict]:
    """Directions and file attributes (recipe decoded)."""
    with h5io.read(path, "directions") as f:
        attrs = h5io.get_attrs(f)
        groups = [f[f"axis{axis}"] for axis in range(int(attrs["n_axes"]))]
        return [{name: torch.from_numpy(g[name][...]) for name in g} for g in groups], attrs
