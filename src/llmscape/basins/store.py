"""The basin HDF5 file (kind ``basin``, docs/results-format.md): one target set, some directions,
every point the search evaluated, the radii it found and the curvature check."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from llmscape import h5io
from llmscape.basins.search import Search


@dataclass
class DirectionResult:
    """One direction's search: what it is, where it went, and its curvature check."""

    label: str  # random-<i> or the direction's name in the config
    method: str  # random | worst | checkpoint
    search: Search
    info: dict = field(default_factory=dict)  # seed / source / objective, norm of d, recipe details
    check: dict = field(default_factory=dict)  # second difference vs d^T H d
    ascent: np.ndarray | None = None  # worst: objective at each iterate


def save_basin(path: str | Path, results: list[DirectionResult], attrs: dict) -> None:
    with h5io.write(path, "basin") as f:
        h5io.set_attrs(f, {**attrs, "labels": [r.label for r in results]})
        for r in results:
            g = f.create_group(f"directions/{r.label}")
            s = r.search
            g.create_dataset("a", data=s.a)
            for metric, values in s.values.items():
                g.create_dataset(f"metrics/{metric}", data=values)
                g.create_dataset(f"evaluated/{metric}", data=s.evaluated[metric])
            if r.ascent is not None:
                g.create_dataset("ascent", data=r.ascent)
            h5io.set_attrs(
                g,
                {
                    "method": r.method,
                    "info": r.info,
                    "check": r.check,
                    "centre": s.centre,
                    "radius": s.radius,
                    "censored": s.censored,
                    "brackets": {m: {k: list(v) for k, v in b.items()} for m, b in s.brackets.items()},
                    "rounds": s.rounds,
                    "precision": s.precision,
                    "max_radius": s.max_radius,
                },
            )


def _metrics(group) -> dict[str, np.ndarray]:
    out = {}

    def visit(name, obj):
        if hasattr(obj, "shape"):
            out[name] = obj[...]

    group.visititems(visit)
    return out


def load_basin(path: str | Path) -> tuple[dict, list[DirectionResult]]:
    """File attributes and every direction's result, in the order they were searched."""
    with h5io.read(path, "basin") as f:
        attrs = h5io.get_attrs(f)
        results = []
        for label in attrs["labels"]:
            g = f[f"directions/{label}"]
            a = h5io.get_attrs(g)
            brackets = {m: {k: tuple(v) for k, v in b.items()} for m, b in a["brackets"].items()}
            search = Search(
                g["a"][...],
                _metrics(g["metrics"]),
                {k: v.astype(bool) for k, v in _metrics(g["evaluated"]).items()},
                a["centre"],
                a["radius"],
                a["censored"],
                int(a["rounds"]),
                float(a["precision"]),
                float(a["max_radius"]),
                brackets,
            )
            ascent = g["ascent"][...] if "ascent" in g else None
            results.append(DirectionResult(label, a["method"], search, a["info"], a["check"], ascent))
        return attrs, results
