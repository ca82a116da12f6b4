"""Compute one shard of a landscape grid, checkpointing as it goes and resuming after a crash.

The shard's state is written to ``<out>.partial`` (atomically) every
``checkpoint_s`` seconds. A rerun picks the partial file up if its ``identity``
(a hash of everything that determines the values) matches, and evaluates only the
points it lacks; a foreign or corrupt partial file is discarded with a warning.
The finished shard is renamed to ``<out>`` only when every point is computed.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from llmscape.engine import Engine
from llmscape.errors import LlmscapeError
from llmscape.grid import points, shard_indices
from llmscape.loss import SequenceStats, metrics
from llmscape.store import Landscape

log = logging.getLogger("llmscape")


def identity(provenance: dict) -> str:
    """A hash of what determines a landscape's values (config, model, data, directions)."""
    return hashlib.sha256(json.dumps(provenance, sort_keys=True).encode()).hexdigest()


class Progress:
    """Points done, rate and ETA, logged at most every ``every_s`` seconds."""

    def __init__(self, total: int, label: str, every_s: float = 5.0):
        self.total, self.label, self.every_s = total, label, every_s
        self.done = 0
        self.start = self.last = time.monotonic()

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every_s or self.done >= self.total:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            log.info(
                "%s: %d/%d points (%.0f%%), %.2f points/s, ETA %.0fs",
                self.label,
                self.done,
                self.total,
                100 * self.done / max(self.total, 1),
                rate,
                eta,
            )


def _resume_state(partial: Path, ident: str) -> Landscape | None:
    if not partial.exists():
        return None
    try:
        state = Landscape.load(partial)
    except LlmscapeError as exc:
        log.warning("discarding unreadable checkpoint %s (%s); recomputing", partial, exc)
        return None
    if state.attrs.get("identity") != ident:
        log.warning("discarding checkpoint %s: it was made for a different config/model/directions", partial)
        return None
    return state


def compute_shard(
    engine: Engine,
    grid_axes: list[np.ndarray],
    n_tokens: np.ndarray,
    out: str | Path,
    provenance: dict,
    shard: int = 0,
    n_shards: int = 1,
    checkpoint_s: float = 30.0,
    label: str = "landscape",
    scorer: Callable[[SequenceStats], dict[str, np.ndarray]] | None = None,
    extra: tuple[str, ...] = (),
) -> Landscape:
    """Evaluate the points of one shard with ``engine`` and write ``out`` when complete.

    ``scorer`` turns the engine's statistics into the stored metrics (default: llmscape.loss.metrics
    with ``n_tokens``); with capability probes it is llmscape.probes.Evaluation.metrics, and
    ``extra`` names the capability grids it adds (``<set>/<metric>``)."""
    if scorer is None:
        scorer = lambda stats: metrics(stats, n_tokens)  # noqa: E731
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    ident = identity(provenance)
    all_points = points(grid_axes)
    mine = shard_indices(len(all_points), n_shards, shard)
    for stale in out.parent.glob(f".{glob.escape(out.name)}*.tmp-*"):  # left by a run killed mid-save
        stale.unlink(missing_ok=True)
    state = _resume_state(partial, ident)
    if state is None:
        attrs = {"identity": ident, "provenance": provenance, "shard": [shard, n_shards], "wall_time_s": 0.0}
        state = Landscape.empty(grid_axes, len(n_tokens), attrs, extra)
    todo = mine[~state.computed.ravel()[mine]]
    if len(todo) < len(mine):
        log.info("%s: resuming, %d of %d points already computed", label, len(mine) - len(todo), len(mine))
    state.attrs["points_computed_this_run"] = int(len(todo))
    progress = Progress(len(todo), label)
    block = max(1, int(engine.block_size))  # every engine has one (llmscape.engine)
    started = last_save = time.monotonic()
    wall_before = float(state.attrs["wall_time_s"])
    for i in range(0, len(todo), block):
        idx = todo[i : i + block]
        state.fill(idx, scorer(engine.evaluate(all_points[idx])))
        progress.advance(len(idx))
        if time.monotonic() - last_save >= checkpoint_s and i + block < len(todo):
            state.attrs["wall_time_s"] = wall_before + time.monotonic() - started
            state.save(partial)
            last_save = time.monotonic()
    state.attrs["wall_time_s"] = wall_before + time.monotonic() - started
    bad = ~np.isfinite(state.loss.ravel()[mine])
    if bad.any():
        log.warning("%s: %d points have a non-finite loss (overflow); stored as inf/NaN", label, bad.sum())
    state.save(out)
    partial.unlink(missing_ok=True)
    return state
