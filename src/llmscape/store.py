"""The landscape HDF5 file: the public results contract (see docs/results-format.md).

Shards and merged landscapes share one layout: full-grid arrays plus a ``computed``
mask, so a shard is simply a landscape with some points still missing. A landscape
evaluated with capability probes (llmscape.probes) also holds one grid per capability
metric, ``capabilities/<set>/<metric>`` (``extra``, keyed ``<set>/<metric>``). Files are
written and checked on read by ``llmscape.h5io`` (atomic rename, format and version).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from llmscape import h5io
from llmscape.errors import LlmscapeError
from llmscape.grid import shard_indices

METRICS = ("loss", "token_loss", "accuracy")


@dataclass
class Landscape:
    axes: list[np.ndarray]
    loss: np.ndarray
    token_loss: np.ndarray
    accuracy: np.ndarray
    per_sequence_loss: np.ndarray  # grid shape + (n_sequences,)
    computed: np.ndarray  # bool, grid shape
    attrs: dict = field(default_factory=dict)
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # capability grids, "<set>/<metric>" -> grid shape

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(a) for a in self.axes)

    @classmethod
    def empty(cls, axes: list[np.ndarray], n_sequences: int, attrs: dict, extra: tuple[str, ...] = ()) -> Landscape:
        shape = tuple(len(a) for a in axes)
        nan = lambda *extra: np.full(shape + extra, np.nan)  # noqa: E731
        grids = {name: nan() for name in extra}
        return cls(list(axes), nan(), nan(), nan(), nan(n_sequences), np.zeros(shape, bool), dict(attrs), grids)

    def fill(self, flat_indices: np.ndarray, values: dict[str, np.ndarray]) -> None:
        """Store metrics (as returned by ``loss.metrics``) at flat grid indices."""
        idx = np.unravel_index(np.asarray(flat_indices), self.shape)
        for key in METRICS:
            getattr(self, key)[idx] = values[key]
        for key, grid in self.extra.items():
            grid[idx] = values[key]
        self.per_sequence_loss[idx] = values["per_sequence_loss"]
        self.computed[idx] = True

    def save(self, path: str | Path) -> None:
        with h5io.write(path, "landscape") as f:
            h5io.set_attrs(f, self.attrs)
            for i, a in enumerate(self.axes):
                f.create_dataset(f"axes/{i}", data=a)
            for key in METRICS:
                f.create_dataset(key, data=getattr(self, key))
            f.create_dataset("per_sequence_loss", data=self.per_sequence_loss)
            f.create_dataset("computed", data=self.computed)
            for key, grid in self.extra.items():
                f.create_dataset(f"capabilities/{key}", data=grid)

    @classmethod
    def load(cls, path: str | Path) -> Landscape:
        with h5io.read(path, "landscape") as f:
            extra = {}
            if "capabilities" in f:
                for name in f["capabilities"]:
                    for metric in f[f"capabilities/{name}"]:
                        extra[f"{name}/{metric}"] = f[f"capabilities/{name}/{metric}"][...]
            return cls(
                [f[f"axes/{i}"][...] for i in range(len(f["axes"]))],
                *(f[k][...] for k in METRICS),
                f["per_sequence_loss"][...],
                f["computed"][...].astype(bool),
                h5io.get_attrs(f),
                extra,
            )


def merge(shard_paths: list[str | Path]) -> Landscape:
    """Assemble shards of one landscape; every point must be computed by some shard."""
    if not shard_paths:
        raise LlmscapeError("merge: no shard files given")
    shards = [Landscape.load(p) for p in shard_paths]
    first = shards[0]
    n_total = first.attrs["shard"][1]
    out = Landscape.empty(first.axes, first.per_sequence_loss.shape[-1], first.attrs, tuple(first.extra))
    seen: dict[int, str | Path] = {}
    for path, shard in zip(shard_paths, shards, strict=True):
        if shard.attrs.get("identity") != first.attrs.get("identity"):
            raise LlmscapeError(f"shard {path} belongs to a different landscape (its identity differs)")
        k, n_shards = shard.attrs["shard"]
        if n_shards != n_total:
            raise LlmscapeError(f"{path} is shard {k} of {n_shards}, but {shard_paths[0]} is one of {n_total}")
        if k in seen:
            raise LlmscapeError(f"shard {k} of {n_shards} given more than once: {seen[k]} and {path}")
        seen[k] = path
        expected = shard_indices(int(np.prod(out.shape)), n_shards, k)
        missing = np.flatnonzero(~shard.computed.ravel()[expected])
        if missing.size:
            raise LlmscapeError(
                f"shard {path} is incomplete: {missing.size} of its {expected.size} points not computed"
            )
        idx = np.unravel_index(expected, out.shape)
        for key in METRICS:
            getattr(out, key)[idx] = getattr(shard, key)[idx]
        for key, grid in out.extra.items():
            grid[idx] = shard.extra[key][idx]
        out.per_sequence_loss[idx] = shard.per_sequence_loss[idx]
        out.computed[idx] = True
    absent = sorted(set(range(n_total)) - set(seen))
    if absent:
        names = ", ".join(f"shard {k} of {n_total}" for k in absent)
        raise LlmscapeError(f"merge: {names} missing (given: {', '.join(map(str, shard_paths))})")
    if not out.computed.all():
        raise LlmscapeError(
            f"shards {list(map(str, shard_paths))} leave {(~out.computed).sum()} grid points uncomputed"
        )
    out.attrs.pop("shard", None)
    out.attrs.pop("points_computed_this_run", None)
    out.attrs["n_shards"] = len(shards)
    out.attrs["wall_time_s"] = float(sum(s.attrs.get("wall_time_s", 0.0) for s in shards))
    return out
