"""Grid engines: turn direction coefficients into per-sequence loss statistics.

Every engine satisfies ``Engine``: ``name``, ``block_size`` (points per ``evaluate``
call), ``evaluate(coeffs [P, n_axes]) -> SequenceStats`` and ``describe()`` (the options
it runs with, for provenance). It leaves the weights as it found them and agrees with
the reference engine (tests/test_engine_*.py).

The config's ``engine`` section holds three kinds of keys, every default of which is
here and nowhere else (the schema, workflow/schemas/config.schema.yaml, repeats them
for validation; tests/test_config.py checks that the two agree key by key):

* ``kind``: reference | fast (``DEFAULT_KIND``);
* engine options (``OPTION_DEFAULTS``), read by the kinds listed in ``OPTIONS_OF``;
* job keys (``JOB_DEFAULTS``): for the job that runs an engine, not for the engine.
  ``threads`` sets the job's torch threads (llmscape.jobs.run_job, and the rule's
  Snakemake threads), ``checkpoint_s`` the shard's checkpoint interval
  (llmscape.surface.compute_shard).

``split_section`` cuts a section into engine options and job keys;
``build_engine`` takes the former only and loads the model as the engine needs;
``engine_on`` builds one over a model already in memory (a job that evaluates several
models or directions with one load: training steps, basin searches, geometry curves).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from llmscape.data import EvalSet
from llmscape.directions import Direction
from llmscape.errors import LlmscapeError
from llmscape.loss import SequenceStats

ENGINES = ("reference", "fast")
DEFAULT_KIND = "fast"
OPTION_DEFAULTS = {
    "device": "cpu",  # cpu, cuda or cuda:N
    "dtype": "float32",  # compute dtype: float32, bfloat16 or float16
    "batch_size": 8,  # reference: sequences per forward pass
    "memory_mb": 2048,  # fast: working-memory budget (with stream, the weights' too)
    "stream": False,  # fast: bring decoder layers in one at a time (engine/streaming.py)
    "offload": None,  # fast, streaming source: disk / cpu; None: disk on cpu, cpu on cuda
    "max_block": 64,  # fast: most grid points per block
    "seq_batch": None,  # fast: sequences per forward; None: from the memory budget
    "head_chunk": None,  # fast: vocabulary rows per head chunk; None: from the memory budget
    # fast: how a targeted nn.Linear gets its per-point weight: "additive" (x W^T + sum c x D^T,
    # one extra matmul of n_axes x the work, nothing materialized), "materialize"
    # (theta* + sum c d written per point into a scratch tensor; costs weight-sized
    # memory traffic per point, no extra FLOPs), or "auto": additive while a point has
    # fewer than ``materialize_rows`` token rows per forward, materialize from there on.
    "linear_mode": "auto",
    "materialize_rows": 256,
}
OPTIONS_OF = {
    "reference": ("device", "dtype", "batch_size"),
    "fast": tuple(k for k in OPTION_DEFAULTS if k != "batch_size"),
}
JOB_DEFAULTS = {"threads": 1, "checkpoint_s": 30}


@runtime_checkable
class Engine(Protocol):
    """What the grid loop (llmscape.surface.compute_shard) and the workflow steps use of an engine."""

    name: str
    block_size: int  # points per evaluate call that use the engine fully

    def evaluate(self, coeffs: np.ndarray) -> SequenceStats:
        """Statistics at each point of ``coeffs`` [P, n_axes]."""
        ...

    def describe(self) -> dict:
        """The options the engine runs with, defaults resolved (stored in provenance)."""
        ...

    def set_directions(self, directions: list[Direction]) -> None:
        """Evaluate along other directions over the same target tensors from now on (basin
        searches walk many directions through one engine)."""
        ...


def split_section(section: dict | None) -> tuple[dict, dict]:
    """The config's ``engine`` section as (kind and engine options, job keys with defaults filled)."""
    section = dict(section or {})
    job = {k: section.pop(k, v) for k, v in JOB_DEFAULTS.items()}
    return section, job


def _kind_and_options(spec: dict | None) -> tuple[str, dict]:
    """``kind`` and the options that kind reads; an unknown kind or option, or a job key, is an error."""
    spec = dict(spec or {})
    kind = spec.pop("kind", DEFAULT_KIND)
    if kind not in ENGINES:
        raise LlmscapeError(f"engine.kind must be one of {ENGINES}, got {kind!r}")
    job = sorted(set(spec) & set(JOB_DEFAULTS))
    if job:
        raise LlmscapeError(f"engine key(s) {job} are for the job, not the engine: split them off with split_section")
    unknown = sorted(set(spec) - set(OPTION_DEFAULTS))
    if unknown:
        raise LlmscapeError(f"unknown engine option(s) for kind {kind}: {unknown}; known: {sorted(OPTIONS_OF[kind])}")
    return kind, {k: v for k, v in spec.items() if k in OPTIONS_OF[kind]}


def build_engine(spec: dict | None, model_dir: str | Path, data: EvalSet, directions: list[Direction]) -> Engine:
    """An engine from ``kind`` and engine options, loading the model as that engine needs.

    Options of the other kind are ignored (the validated config holds every option);
    job keys are refused: ``split_section`` takes them out first.
    """
    kind, options = _kind_and_options(spec)
    if kind == "fast":
        from llmscape.engine.fast import FastEngine

        # The fast engine loads the model itself: fully, or as a skeleton when streaming.
        return FastEngine(model_dir, data, directions, **options)
    from llmscape.engine.reference import ReferenceEngine
    from llmscape.models import load_prepared

    o = {k: OPTION_DEFAULTS[k] for k in OPTIONS_OF["reference"]} | options
    model, _ = load_prepared(model_dir, o["dtype"], o["device"])
    return ReferenceEngine(model, data, directions, batch_size=o["batch_size"])


# Options that say how a model is loaded: a model already in memory is where and what it runs as
# (and never streams).
LOAD_OPTIONS = ("device", "dtype", "stream", "offload")


def engine_on(options: dict | None, model, data: EvalSet, directions: list[Direction]) -> Engine:
    """An engine of ``options['kind']`` over an already loaded ``model``; the options that say how a model is
    loaded (``LOAD_OPTIONS``) and those of the other kind are ignored, job keys are not allowed."""
    kind, options = _kind_and_options(options)
    chosen = {k: v for k, v in options.items() if k not in LOAD_OPTIONS}
    if kind == "fast":
        from llmscape.engine.fast import FastEngine

        return FastEngine(model, data, directions, **chosen)
    from llmscape.engine.reference import ReferenceEngine

    return ReferenceEngine(model, data, directions, batch_size=chosen.get("batch_size", OPTION_DEFAULTS["batch_size"]))
