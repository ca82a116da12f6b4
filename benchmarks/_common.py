"""What the benchmarks share: the embedded SmolLM2 as a prepared model directory."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from llmscape.models import prepare_model

WORKFLOW_MODEL = Path("results/smollm2-135m/model")  # where `snakemake --cores all` prepares it
FALLBACK = Path(tempfile.gettempdir()) / "llmscape-bench" / "smollm2-135m"


def smollm2_dir() -> Path:
    """The workflow's prepared SmolLM2 if present, else a one-time conversion into $TMPDIR."""
    for d in (WORKFLOW_MODEL, FALLBACK):
        if (d / "manifest.json").exists():
            return d
    t0 = time.perf_counter()
    prepare_model("embedded:smollm2-135m-instruct", FALLBACK)
    print(f"prepared embedded:smollm2-135m-instruct into {FALLBACK} in {time.perf_counter() - t0:.1f}s", flush=True)
    return FALLBACK
