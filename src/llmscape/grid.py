"""Grids of direction coefficients: axes, flattened points, shards."""

from __future__ import annotations

import numpy as np

from llmscape.errors import LlmscapeError


def axes(spec: dict) -> list[np.ndarray]:
    """Coordinate axes of a grid spec {dims, min, max, points}; one array per dimension."""
    dims, points = int(spec.get("dims", 2)), int(spec.get("points", 21))
    lo, hi = float(spec.get("min", -1.0)), float(spec.get("max", 1.0))
    if dims not in (1, 2):
        raise LlmscapeError(f"grid.dims must be 1 or 2, got {dims}")
    if points < 1:
        raise LlmscapeError(f"grid.points must be >= 1, got {points} (an empty grid has nothing to compute)")
    if not hi > lo and points > 1:
        raise LlmscapeError(f"grid.max ({hi}) must exceed grid.min ({lo})")
    return [np.linspace(lo, hi, points) for _ in range(dims)]


def points(grid_axes: list[np.ndarray]) -> np.ndarray:
    """All grid points [P, dims] in C order (last axis fastest), matching reshape(grid_shape)."""
    mesh = np.meshgrid(*grid_axes, indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=1)


def shard_indices(n_points: int, n_shards: int, shard: int) -> np.ndarray:
    """Flat point indices of shard ``shard`` of ``n_shards`` (contiguous, sizes differ by <= 1)."""
    if not 0 <= shard < n_shards:
        raise LlmscapeError(f"shard {shard} out of range for {n_shards} shards")
    return np.array_split(np.arange(n_points), n_shards)[shard]
