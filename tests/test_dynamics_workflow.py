"""The dynamics study through Snakemake: a dry run lists its jobs, one full run on a tiny Llama fills the paper."""

from __future__ import annotations

import re

import h5py
import pandas as pd
import pytest
from workflow_helpers import run_snakemake, write_config


def config_of(model_dir) -> dict:
    """One 3-point 1-D study (the schema needs one) and a small dynamics study."""
    return {
        "model": {"name": "tiny", "source": str(model_dir)},
        "data": {"name": "two", "prompts": ["hello world, a test", "loss landscapes!"]},
        "engine": {"checkpoint_s": 0},
        "resources": {"mem_mb": 500, "runtime": 5},
        "weight_spectra": {"enabled": False},
        "studies": {
            "s": {
                "tensors": [r"mlp\.up_proj"],
                "layers": ["last"],
                "directions": {"r": {}},
                "grid": {"dims": 1, "points": 3},
            }
        },
        "dynamics": {
            "enabled": True,
            "train": {"lr": 0.02, "steps": 2, "save_every": 1},
            "grid": {"points": 3},
            "shards": 2,  # the default, 1, is the run measured in the README; here shard jobs and merges
            "pca": {"points": 3},
            "corpus": {"seq_len": 16, "max_sequences": 2},
            "next_token": {"prompt": "The capital", "top_k": 2, "alphas": [0.5]},
            "curvature": {"max_iter": 4, "trace_probes": 2},
        },
    }


def test_a_dry_run_plans_the_study_and_a_bad_section_stops_it_before_any_job(tmp_path, tiny_dir):
    write_config(tmp_path, config_of(tiny_dir))
    out = run_snakemake(tmp_path, "-n").stdout
    for rule in ("dynamics_data", "dynamics_directions", "dynamics_train", "dynamics_trajectory", "dynamics_report"):
        assert re.search(rf"^{rule}\s+1", out, re.M), f"{rule} missing from the dry run"
    bad = config_of(tiny_dir)
    bad["dynamics"]["train"] |= {"steps": 3, "save_every": 4}
    write_config(tmp_path, bad)
    proc = run_snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0 and "['train']['save_every'] = 4: larger than steps = 3" in proc.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_the_dynamics_study_end_to_end(tmp_path, tiny_dir):
    write_config(tmp_path, config_of(tiny_dir))
    run_snakemake(tmp_path, "--cores", "2")
    r = tmp_path / "results/tiny"
    steps = pd.read_csv(r / "tables/dynamics/steps.csv")
    assert list(steps.step) == [0, 1, 2] and steps.lambda_max.notna().all()
    assert abs(steps.train_log_loss[1] - steps.loss_phrase[1]) < 1e-5  # the slice job's centre vs the log
    with h5py.File(r / "dynamics/slices/phrase/step-2.h5") as f:  # plain h5py: the documented contract
        assert f["loss"].shape == (3, 3) and f["computed"][...].all() and f.attrs["n_shards"] == 2
    with h5py.File(r / "dynamics/trajectory.h5") as f:
        assert f.attrs["format"] == "llmscape-trajectory" and f["fixed/coords"].shape == (3, 2)
    assert sorted(p.name for p in (r / "dynamics/slices/corpus").glob("*.h5")) == ["step-0.h5", "step-2.h5"]
    assert len(list((r / "benchmarks/dynamics/slices").rglob("*.tsv"))) == 5 * 2
    paper = (r / "paper/index.html").read_text()
    assert "Training dynamics" in paper and "Trajectory PCA" in paper and "../figures/dynamics/slices.html" in paper
    assert "Nothing to be done" in run_snakemake(tmp_path, "-n").stdout
