"""Cost estimates (llmscape.cost) bound the peak memory of real jobs, and are logged before the work."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from snakemake.utils import validate
from workflow_helpers import ROOT

from llmscape import steps
from llmscape.models import prepare_model
from llmscape.study import LandscapeSpec, curvature_config, landscape_config

PEAK = """
import json, sys
from llmscape import steps
from llmscape.jobs import setup_logging
setup_logging()
args = json.loads(sys.argv[1])
getattr(steps, args.pop("step"))(**args)
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"peak": int(hwm.split()[1]) * 1024}))
"""


def run_step(**args) -> tuple[int, str]:
    """Peak RSS (bytes) of one step run in a fresh process, and what it logged."""
    proc = subprocess.run(
        [sys.executable, "-c", PEAK, json.dumps(args)], capture_output=True, text=True, check=True, timeout=300
    )
    return json.loads(proc.stdout.splitlines()[-1])["peak"], proc.stderr


@pytest.fixture(scope="module")
def prepared(tiny_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cost")
    config = {
        "model": {"name": "tiny", "source": str(tiny_dir)},
        "data": {"prompts": ["hello world, a test of memory", "loss landscapes!"] * 4},
        "studies": {
            "s": {
                "tensors": ["mlp"],
                "directions": {"r": {}},
                "grid": {"dims": 2, "points": 9},
                "curvature": {"enabled": True, "k": 2, "max_iter": 30, "trace_probes": 4, "density_probes": 1},
            }
        },
    }
    validate(config, str(ROOT / "workflow/schemas/config.schema.yaml"))
    model = tmp / "model"
    prepare_model(str(tiny_dir), model)
    data = tmp / "data.h5"
    steps.prepare_data(model, config["data"], data)
    landscape = landscape_config(config, LandscapeSpec("s", "last", "r"))
    directions = tmp / "dirs.h5"
    steps.make_directions(model, data, landscape, directions)
    return {"config": config, "model": str(model), "data": str(data), "dirs": str(directions), "tmp": tmp}


def test_grid_job_estimate_bounds_its_peak_and_is_logged_first(prepared):
    p = prepared
    landscape = landscape_config(p["config"], LandscapeSpec("s", "last", "r"))
    engine = p["config"]["engine"]
    estimate = steps.surface_estimate(p["model"], p["data"], landscape, engine)
    peak, logged = run_step(
        step="compute_surface",
        model_dir=p["model"],
        data_path=p["data"],
        directions_path=p["dirs"],
        job_config=landscape,
        engine_section=engine,
        out=str(p["tmp"] / "ls.h5"),
    )
    assert peak <= estimate.peak_bytes <= 4 * peak, (peak, estimate)
    assert estimate.work == pytest.approx(81 * 2 / 5)  # 9x9 points, last of 4 layers + head of 5
    assert logged.splitlines()[0].endswith(estimate.describe())


def test_spectrum_job_estimate_bounds_its_peak(prepared):
    p = prepared
    job = curvature_config(p["config"], "s", "all")
    estimate = steps.hessian_estimate(p["model"], p["data"], job)
    peak, logged = run_step(
        step="compute_curvature", model_dir=p["model"], data_path=p["data"], job_config=job, out=str(p["tmp"] / "s.h5")
    )
    assert peak <= estimate.peak_bytes <= 4 * peak, (peak, estimate)
    assert estimate.work == 30 + 2 + 2 * 30 + 4 + 30  # top-k, residuals, both ends, trace, density (upper bound)
    assert estimate.describe() in logged
