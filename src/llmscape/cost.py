"""What a heavy job will cost, known before it starts: work in forward-equivalents or HVPs, and peak memory.

Work. One forward-equivalent is one forward pass of the whole evaluation set through
the whole model. A grid point costs 1 on the reference engine and
(L - k + 1) / (L + 1) on the fast engine, whose points run only the decoder layers from
the first targeted one (k of L) and the head (counted as one layer). A Hessian-vector
product (HVP) costs about 4 forward passes (forward, backward, and the backward of
that) through the same part of the model; the count is an upper bound, reached when
every eigensolver runs to its ``max_iter``.

Peak memory (bytes) is the sum of what the job holds at its peak, rounded up:
    BASE (Python, torch, transformers; 250 MB measured here, 600 MB allowed)
  + the model's weights in the job's dtype
  + the directions (float32 on the CPU, and once more in the compute dtype)
  + grid jobs: the engine's activations (fast: what one block of points needs through a
    layer and a head chunk, at most its ``memory_mb`` budget; reference: one sequence
    batch's logits in float32 and their float64 log-softmax) and the result arrays
    (float64, 5 + N per point);
  + spectra: the Krylov basis, max_iter + 1 float64 vectors over the targets (kept in
    float64: Lanczos with full reorthogonalization loses the orthogonality of its basis,
    and with it spurious copies of eigenvalues appear, when the basis is kept in float32),
    the eigenvector block, and the double-backward graph of one batch of 8 sequences
    (about 3 x its forward activations in float32, ~ 16 hidden-size floats per token and
    layer, plus the chunked head's 4096-word chunks).
The rule's ``mem_mb`` (workflow/rules/*.smk) is this estimate plus a 25% margin, unless
the config's ``resources.mem_mb`` fixes it; tests/test_cost.py checks the estimate
against the peak RSS of real jobs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from llmscape.engine import DEFAULT_KIND, OPTION_DEFAULTS

BASE_BYTES = 600 * 2**20
ROW_FLOATS = 16  # activation floats per token and hidden unit held through a decoder layer (generous)
HEAD_CHUNK = 4096  # vocabulary rows of one chunk of the chunked head
MARGIN = 1.25
HVP_FORWARDS = 4
_ELT = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class Estimate:
    work: float  # forward-equivalents (grid jobs) or HVPs (spectra), an upper bound
    unit: str  # "forward-equivalents" or "HVPs"
    peak_bytes: int

    @property
    def mem_mb(self) -> int:
        """The memory to ask a scheduler for: the peak plus the margin, in MB."""
        return math.ceil(self.peak_bytes * MARGIN / 2**20)

    def describe(self) -> str:
        return f"estimated cost: {self.work:,.0f} {self.unit}, peak memory {self.peak_bytes / 2**30:.2f} GiB"


def _model_facts(model_dir: str | Path) -> dict:
    config = json.loads((Path(model_dir) / "config.json").read_text())
    manifest = json.loads((Path(model_dir) / "manifest.json").read_text())

    def first(*keys, default=None):
        return next((config[k] for k in keys if config.get(k) is not None), default)

    hidden = first("hidden_size", "n_embd", "d_model")
    return {
        "n_parameters": manifest["n_parameters"],
        "n_layers": manifest["n_layers"],
        "hidden": hidden,
        "intermediate": first("intermediate_size", "n_inner", "ffn_dim", default=4 * hidden),
        "vocab": config["vocab_size"],
    }


def _data_shape(data_path: str | Path) -> tuple[int, int]:
    from llmscape import h5io

    with h5io.read(data_path, "eval-set") as f:
        n, t = f["input_ids"].shape
    return int(n), int(t)


def _first_layer(names: list[str], n_layers: int) -> int:
    """The first decoder layer a grid point or an HVP must run through. A targeted tensor outside
    the layers counts as layer 0 (the embedding), except the head's, which only the head uses."""
    from llmscape.targets import layer_index

    def start(name: str) -> int:
        i = layer_index(name)
        return i if i is not None else (n_layers if "lm_head" in name else 0)

    return min(start(n) for n in names)


def surface(model_dir: str | Path, data_path: str | Path, job_config: dict, engine_section: dict, names: list[str]):
    """A grid shard's cost on the targets ``names`` (the whole grid: an upper bound for a shard)."""
    from llmscape.models import tensor_shapes

    m = _model_facts(model_dir)
    n_seq, t_max = _data_shape(data_path)
    options = {**OPTION_DEFAULTS, **engine_section}
    grid = job_config["grid"]
    n_points = grid["points"] ** grid["dims"]
    elt = _ELT[options["dtype"]]
    if engine_section.get("kind", DEFAULT_KIND) == "reference":
        work = float(n_points)
        activations = min(int(options["batch_size"]), n_seq) * t_max * m["vocab"] * (4 + 8 + 8)
    else:
        start = _first_layer(names, m["n_layers"])
        work = n_points * (m["n_layers"] - start + 1) / (m["n_layers"] + 1)
        # The engine fills its memory_mb budget only when a block of points needs that much.
        rows = min(int(options["max_block"]), n_points) * n_seq * t_max
        need = rows * (ROW_FLOATS * m["hidden"] + 3 * m["intermediate"]) * elt + rows * HEAD_CHUNK * 4
        activations = min(int(options["memory_mb"]) * 2**20, need)
    shapes = tensor_shapes(model_dir)
    n_target = sum(math.prod(shapes[n]) for n in names)
    directions = grid["dims"] * n_target * (4 + elt)
    results = n_points * (5 + n_seq) * 8
    peak = BASE_BYTES + m["n_parameters"] * elt + directions + activations + results
    return Estimate(work, "forward-equivalents", int(peak))


def hessian(model_dir: str | Path, data_path: str | Path, names: list[str], n_vectors: int, hvps: int) -> Estimate:
    """Eigensolvers and estimators on the Hessian over ``names``: ``n_vectors`` float64 vectors over
    the targets held at once (the Krylov basis and the eigenvectors), at most ``hvps`` products."""
    from llmscape.models import tensor_shapes

    m = _model_facts(model_dir)
    n_seq, t_max = _data_shape(data_path)
    shapes = tensor_shapes(model_dir)
    n_target = sum(math.prod(shapes[n]) for n in names)
    layers_run = max(m["n_layers"] - _first_layer(names, m["n_layers"]), 1)
    batch = min(8, n_seq)
    graph = 3 * batch * t_max * (ROW_FLOATS * m["hidden"] + 3 * m["intermediate"]) * 4 * layers_run
    head = 3 * batch * t_max * HEAD_CHUNK * 4
    prefix = n_seq * t_max * m["hidden"] * 4
    peak = BASE_BYTES + m["n_parameters"] * 4 + n_vectors * n_target * 8 + graph + head + prefix
    return Estimate(float(hvps), "HVPs", int(peak))
