"""The basin workflow end to end on a tiny Llama: probe sets, a fine-tune, worst-case and checkpoint
directions for a landscape and for a basin study, capability grids, tables, figures and the paper."""

from __future__ import annotations

import json

import h5py
import pandas as pd
import pytest
from workflow_helpers import dry_run_jobs, run_snakemake, write_config

from llmscape.store import Landscape

ITEMS = [{"context": f"{c}{c}{c}", "choices": [f"{c}", "%"], "answer": 0} for c in "abcdefgh"]


@pytest.mark.slow
def test_basins_end_to_end(tmp_path, tiny_dir):
    items = tmp_path / "toy.jsonl"
    items.write_text("\n".join(json.dumps(i) for i in ITEMS) + "\n")
    config = {
        "model": {"name": "tiny", "source": str(tiny_dir)},
        "data": {"name": "two", "prompts": ["hello world, a test", "loss landscapes!"]},
        "engine": {"checkpoint_s": 0},
        "resources": {"mem_mb": 500, "runtime": 5},
        "weight_spectra": {"enabled": False},
        "probes": {"sets": {"toy": {"file": str(items)}}},
        "finetune": {"ft": {"data": "probes:toy", "answers": "wrong", "tensors": ["proj"], "steps": 2, "lr": 0.01}},
        "studies": {
            "caps": {
                "tensors": [r"mlp\.up_proj"],
                "layers": ["last"],
                "capabilities": ["toy"],
                "directions": {
                    "worst": {"method": "worst", "radius": 0.2, "steps": 2},
                    "ft": {"method": "checkpoint", "norm": "none", "source": "finetune:ft"},
                },
                "grid": {"dims": 1, "points": 5, "min": -0.5, "max": 1.5},
            }
        },
        "basins": {
            "b": {
                "tensors": ["proj"],
                "layers": ["all", "last"],
                "capabilities": ["toy"],
                "random": {"n": 4},
                "directions": {
                    "worst": {"method": "worst", "radius": 0.1, "steps": 2},
                    "ft": {"method": "checkpoint", "source": "finetune:ft"},
                },
                "tolerance": {"loss": 0.01, "accuracy": 0.2},
                "search": {"start": 0.1, "precision": 0.25, "max_radius": 2.0},
                "shards": 2,
            }
        },
    }
    write_config(tmp_path, config)
    run_snakemake(tmp_path, "--cores", "2")
    r = tmp_path / "results/tiny"

    probes = pd.read_csv(r / "tables/probes.csv")
    assert probes["probe_set"].tolist() == ["toy"] and probes["items"][0] == 8
    assert (r / "finetune/ft/history.json").exists()
    with h5py.File(r / "landscapes/caps/last-ft.h5") as f:  # plain h5py: the documented layout
        assert f["capabilities/toy/accuracy"].shape == (5,) and f["capabilities/toy/logprob"].shape == (5,)
    ls = Landscape.load(r / "landscapes/caps/last-worst.h5")
    assert set(ls.extra) == {"toy/accuracy", "toy/accuracy_norm", "toy/logprob"}
    recipe = ls.attrs["provenance"]["directions_recipe"]
    assert recipe["method"] == "worst" and recipe["n_gradients"] == 4
    for name in ("last-worst", "last-ft"):
        assert (r / f"figures/caps/{name}-capabilities.png").stat().st_size > 5000

    summary = pd.read_csv(r / "tables/basins/b/summary.csv")
    radii = pd.read_csv(r / "tables/basins/b/radii.csv")
    assert set(summary["layer"]) == {"all", "last"} and set(summary["metric"]) == {"loss", "toy/accuracy"}
    assert (summary["n_random"] == 4).all() and {"radius:worst", "radius:ft"} <= set(summary.columns)
    assert set(radii["direction"]) == {"random-0", "random-1", "random-2", "random-3", "worst", "ft"}
    loss = radii[radii["metric"] == "loss"]
    assert loss["check_ratio"].notna().all()
    assert (r / "figures/basins/b/basins.png").stat().st_size > 10_000

    paper = (r / "paper/index.html").read_text()
    assert '<h2 id="basins">Basins</h2>' in paper and "Basin study: b" in paper
    row = summary[(summary["layer"] == "last") & (summary["metric"] == "loss")].iloc[0]
    assert f"{row['median']:.3g} [{row['ci_low']:.3g}, {row['ci_high']:.3g}]" in paper  # numbers from results/
    assert "Capabilities on the landscape grids" in paper

    again = run_snakemake(tmp_path, "-n")
    assert "Nothing to be done" in again.stdout + again.stderr
    # one more direction and another bootstrap: only that direction's jobs and the report rerun
    b = config["basins"]["b"]
    more = {**b, "directions": {**b["directions"], "ft2": {"method": "checkpoint", "source": "finetune:ft"}}}
    write_config(tmp_path, {**config, "basins": {"b": {**more, "bootstrap": {"samples": 500}}}})
    jobs = dry_run_jobs(run_snakemake(tmp_path, "-n").stdout)
    assert sorted({rule for rule, _ in jobs}) == ["all", "basin_direction", "basin_report", "basin_search", "claims",
                                                  "paper"]  # fmt: skip
    per_direction = [w for rule, w in jobs if rule in ("basin_direction", "basin_search")]
    assert len(per_direction) == 2 * 2 and all("ft2" in w for w in per_direction), per_direction
