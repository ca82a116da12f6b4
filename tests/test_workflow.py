"""The workflow itself: lint and dry-run on the default config, and a full run on a tiny model."""

from __future__ import annotations

import re
import tomllib

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml
from workflow_helpers import ROOT, reversed_settings, run_snakemake, tiny_config, write_config

from llmscape.store import Landscape


def test_default_config_lints_and_dry_runs(tmp_path):
    write_config(tmp_path, yaml.safe_load((ROOT / "config/config.yaml").read_text()))
    run_snakemake(tmp_path, "--lint")
    out = run_snakemake(tmp_path, "-n").stdout
    for rule in (
        "prepare_model",
        "prepare_data",
        "directions",
        "surface",
        "merge",
        "plot_landscape",
        "compare_study",
        "paper",
    ):
        assert re.search(rf"^{rule}\s+\d+", out, re.M), f"{rule} missing from the dry run"


def test_conda_env_pins_match_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((ROOT / "envs/llmscape.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert sorted(p for p in pip if "==" in p) == sorted(project)


def test_bad_config_fails_before_any_job(tmp_path, tiny_dir):
    config = tiny_config(tiny_dir)
    config["studies"]["layers"]["grid"]["points"] = "many"
    write_config(tmp_path, config)
    proc = run_snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0
    message = proc.stdout + proc.stderr
    assert "['grid']['points']" in message and "'integer'" in message
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_tiny_end_to_end(tiny_run):
    tmp_path = tiny_run.workdir  # the run (conftest.tiny_run) is shared with tests/test_paper.py
    r = tmp_path / "results/tiny"
    manifest = yaml.safe_load((r / "model/manifest.json").read_text())
    assert manifest["n_layers"] == 4 and len(manifest["sha256"]) == 64

    for name, dims, layer_index in [
        ("layers/first-random", 2, 0),
        ("layers/last-random", 2, 3),
        ("whole/all-hessian", 1, None),
    ]:
        with h5py.File(r / f"landscapes/{name}.h5") as f:  # plain h5py: the documented contract
            assert f["loss"].shape == (5,) * dims
            assert f["computed"][...].all() and np.isfinite(f["loss"][...]).all()
            assert f["per_sequence_loss"].shape == (5,) * dims + (2,)
        ls = Landscape.load(r / f"landscapes/{name}.h5")
        assert ls.attrs["provenance"]["directions_recipe"]["layer_index"] == layer_index
        assert ls.attrs["provenance"]["model_sha256"] == manifest["sha256"]
        for ext in ("png", "pdf", "html"):
            assert (r / f"figures/{name}.{ext}").stat().st_size > 1000
    assert Landscape.load(r / "landscapes/layers/first-random.h5").attrs["n_shards"] == 2
    for study, n_rows in [("layers", 2), ("whole", 1)]:
        table = pd.read_csv(r / f"tables/{study}/summary.csv")
        assert len(table) == n_rows and table["loss_centre"].notna().all()
        assert (r / f"figures/{study}/compare.png").exists()

    with h5py.File(r / "directions/whole/all-hessian.h5") as f:
        assert f["eigenvalues"].shape == (1,) and "hessian" in f.attrs["recipe"]
    curvature = pd.read_csv(r / "tables/curvature.csv")
    assert curvature["layer_index"].tolist() == [0, 3] and curvature["lambda_2"].notna().all()
    weights = pd.read_csv(r / "tables/weight_spectra.csv")
    assert len(weights) == 4 * 7 and (weights["condition_number"] >= 1).all()

    paper = (r / "paper/index.html").read_text()
    table = pd.read_csv(r / "tables/layers/summary.csv")
    assert f"{table.loss_centre[0]:.4f}" in paper  # numbers come from the results
    # compare figures + one per landscape + curvature + weight spectra
    assert paper.count("data:image/png;base64,") == 2 + 3 + 1 + 1
    assert f"{curvature.lambda_1[0]:.4g}" in paper
    claims = pd.read_csv(r / "tables/claims.csv")
    assert len(claims) >= 9 and set(claims["verdict"]) <= {"holds", "does not hold", "inconclusive"}
    assert 'id="claims"' in paper and all(f'id="claim-{i}"' in paper for i in claims["id"])
    assert "no dynamics study in this config" in paper  # an absent study makes its claims inconclusive
    assert "wall_time_s" not in paper and (r / "paper/provenance.html").exists()
    assert paper.count('href="explorer.html#study=') == 3 and (r / "paper/explorer.html").stat().st_size > 1e6

    again = run_snakemake(tmp_path, "-n")
    assert "Nothing to be done" in again.stdout + again.stderr
    # the same settings in another key order (and a default written out) rerun nothing
    reordered = reversed_settings(tiny_run.config) | {"model": {"dtype": "float32", **tiny_run.config["model"]}}
    config_file = tmp_path / "config.yaml"
    original = config_file.read_text()
    config_file.write_text(yaml.safe_dump(reordered, sort_keys=False))
    try:
        again = run_snakemake(tmp_path, "-n")
    finally:
        config_file.write_text(original)
    assert "Nothing to be done" in again.stdout + again.stderr, again.stdout[-3000:]

    run_snakemake(tmp_path, "--report", "report.html")
    report = (tmp_path / "report.html").read_text()
    for shown in (
        "compare.png",
        "curvature.png",
        "weight_spectra.png",
        "summary.csv",
        "Loss landscape of study",
        "claims.csv",
    ):
        assert shown in report, shown
