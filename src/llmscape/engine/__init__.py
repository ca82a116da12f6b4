"""Grid engines: turn direction coefficients into per-sequence loss statistics.

Every engine has ``name``, ``block_size`` (points per ``evaluate`` call),
``evaluate(coeffs [P, n_axes]) -> SequenceStats`` and ``describe()`` (the options it
runs with, for provenance), leaves the weights as it found them, and agrees with the
reference engine (tests/test_engine_*.py).

Config ``engine`` section:
  kind: reference | fast
  dtype: float32 | bfloat16 | float16      (both)
  device: cpu | cuda | cuda:N              (both)
  batch_size: sequences per forward        (reference)
  memory_mb, stream, offload, max_block, seq_batch, head_chunk, threads   (fast;
      see llmscape.engine.fast.DEFAULTS)
"""

from __future__ import annotations

from pathlib import Path

from llmscape.data import EvalSet
from llmscape.directions import Direction
from llmscape.errors import LlmscapeError

ENGINES = ("reference", "fast")
# Keys of the engine section that are for the workflow or the other engine, not options.
WORKFLOW_KEYS = {"batch_size", "checkpoint_s", "threads"}


def build_engine(spec: dict, model_dir: str | Path, data: EvalSet, directions: list[Direction]):
    """An engine from the config's ``engine`` section, loading the model as that engine needs."""
    spec = dict(spec or {})
    kind = spec.pop("kind", "reference")
    if kind not in ENGINES:
        raise LlmscapeError(f"engine.kind must be one of {ENGINES}, got {kind!r}")
    if kind == "fast":
        from llmscape.engine.fast import DEFAULTS, FastEngine

        options = {k: v for k, v in spec.items() if k in DEFAULTS and k not in WORKFLOW_KEYS}
        unknown = sorted(set(spec) - set(DEFAULTS) - WORKFLOW_KEYS)
        if unknown:
            raise LlmscapeError(f"unknown engine option(s) for kind fast: {unknown}; known: {sorted(DEFAULTS)}")
        # The fast engine loads the model itself: fully, or as a skeleton when streaming.
        return FastEngine(model_dir, data, directions, **options)
    from llmscape.engine.reference import ReferenceEngine
    from llmscape.models import load_prepared

    model, _ = load_prepared(model_dir, spec.get("dtype", "float32"), spec.get("device", "cpu"))
    return ReferenceEngine(model, data, directions, batch_size=spec.get("batch_size", 8))

