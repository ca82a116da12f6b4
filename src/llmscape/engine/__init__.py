"""Grid engines: turn direction coefficients into per-sequence loss statistics.

Every engine has ``block_size`` (points per ``evaluate`` call) and
``evaluate(coeffs [P, n_axes]) -> SequenceStats``, leaves the weights as it found
them, and agrees with the reference engine (tests/test_engine_*.py).
"""

from __future__ import annotations

from pathlib import Path

from llmscape.data import EvalSet
from llmscape.directions import Direction
from llmscape.errors import LlmscapeError

ENGINES = ("reference",)


def build_engine(spec: dict, model_dir: str | Path, data: EvalSet, directions: list[Direction]):
    """An engine from the config's ``engine`` section, loading the model as that engine needs."""
    from llmscape.models import load_prepared

    kind = spec.get("kind", "reference")
    if kind not in ENGINES:
        raise LlmscapeError(f"engine.kind must be one of {ENGINES}, got {kind!r}")
    model, _ = load_prepared(model_dir, spec.get("dtype", "float32"), spec.get("device", "cpu"))
    from llmscape.engine.reference import ReferenceEngine

    return ReferenceEngine(model, data, directions, batch_size=spec.get("batch_size", 8))
