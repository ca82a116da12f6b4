"""profiles/slurm on a real one-node SLURM cluster: a sharded tiny study, checked against a local run.

Brings up slurmctld/slurmd/munged with tests/slurm_cluster.py (installing Debian's packages
if missing), runs ``snakemake --profile profiles/slurm`` with shards > 1, so each shard is
its own SLURM job, and meanwhile ``snakemake --cores 2`` on the same config in another
directory. The merged landscapes must be equal, and slurmctld must have seen one job per
non-local rule instance (the shards among them) and none for the local merge.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from llmscape.store import METRICS, Landscape

sys.path.insert(0, str(Path(__file__).parent))
from slurm_cluster import SlurmCluster, why_unavailable  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
N_SHARDS = 3
LAYERS = ["last"]

pytestmark = pytest.mark.slurm


def tiny_config(results: Path, model_dir: Path) -> dict:
    """A study on the tiny random Llama: one landscape, 3 shards of a 5x5 grid (25 = 9 + 8 + 8 points)."""
    return {
        "results": str(results),
        "model": {"name": "tiny", "source": str(model_dir)},
        "data": {"name": "prompts", "kind": "prompts", "prompts": ["hello world, a test", "loss landscapes!"]},
        "engine": {"kind": "reference", "threads": 1, "checkpoint_s": 0},
        "resources": {"mem_mb": 1000, "runtime": 10},
        "studies": {
            "tiny": {
                "tensors": [r"mlp\.up_proj"],
                "layers": LAYERS,
                "directions": {"random": {"method": "random", "norm": "filter", "seed": 0}},
                "grid": {"dims": 2, "min": -1.0, "max": 1.0, "points": 5},
                "shards": N_SHARDS,
            }
        },
    }


def targets(results: Path) -> list[Path]:
    return [results / "tiny" / "landscapes" / "tiny" / f"{layer}-random.h5" for layer in LAYERS]


def snakemake(workdir: Path, configfile: Path, *args: str) -> subprocess.Popen:
    """Snakemake on the repository's Snakefile, working in ``workdir`` (its own .snakemake/)."""
    cmd = [
        SNAKEMAKE,
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(workdir),
        "--configfile",
        str(configfile),
        *args,
        *map(str, targets(workdir / "results")),
    ]
    log = open(workdir / "snakemake.out", "w")  # noqa: SIM115 (the child keeps its own copy)
    try:
        return subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True)
    finally:
        log.close()


def finish(procs: dict[str, tuple[subprocess.Popen, Path]], timeout: float) -> dict[str, float]:
    """Wait for all runs; seconds from now until each one ended. Fails with the log of a failed run."""
    t0, ended = time.monotonic(), {}
    while len(ended) < len(procs) and time.monotonic() - t0 < timeout:
        for name, (proc, _) in procs.items():
            if name not in ended and proc.poll() is not None:
                ended[name] = time.monotonic() - t0
        time.sleep(0.2)
    for name, (proc, workdir) in procs.items():
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
        out = (workdir / "snakemake.out").read_text()
        assert proc.returncode == 0, f"{name} snakemake in {workdir} failed ({proc.returncode}):\n{out[-6000:]}"
    return ended


@pytest.fixture
def cluster(tmp_path):
    reason = why_unavailable()
    if reason:
        pytest.skip(reason)
    c = SlurmCluster(tmp_path / "slurm")
    try:
        c.start()
        yield c
    finally:
        c.stop()  # by PID, in teardown whatever happened


def test_profile_runs_shards_as_slurm_jobs(cluster, tiny_dir, tmp_path, record_property):
    local_dir, slurm_dir = tmp_path / "local", tmp_path / "slurm-run"
    for d in (local_dir, slurm_dir):
        d.mkdir()
        (d / "config.yaml").write_text(yaml.safe_dump(tiny_config(d / "results", tiny_dir)))

    on_slurm = snakemake(slurm_dir, slurm_dir / "config.yaml", "--profile", str(REPO / "profiles" / "slurm"))
    local = snakemake(local_dir, local_dir / "config.yaml", "--cores", "2")  # side by side
    wall = finish({"slurm": (on_slurm, slurm_dir), "local": (local, local_dir)}, timeout=300)

    # Equal results: every stored array of each merged landscape.
    for on_cluster, here in zip(targets(slurm_dir / "results"), targets(local_dir / "results"), strict=True):
        a, b = Landscape.load(on_cluster), Landscape.load(here)
        assert a.attrs["n_shards"] == b.attrs["n_shards"] == N_SHARDS
        assert a.computed.all() and np.isfinite(a.loss).all()
        for key in (*METRICS, "per_sequence_loss", "computed"):
            np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=f"{on_cluster.name}: {key}")
        assert a.attrs["identity"] == b.attrs["identity"]

    # The jobs went through SLURM: one job per non-local rule instance, each shard its own job,
    # all completed; the local rules (merge) never reached the queue.
    jobs = cluster.jobs()
    rules = Counter(j["comment"].split("_wildcards_")[0].removeprefix("rule_") for j in jobs)
    assert rules["surface"] == N_SHARDS * len(LAYERS), jobs
    assert rules["directions"] == len(LAYERS), jobs
    assert rules["prepare_model"] == 1, jobs
    assert "merge" not in rules and "all" not in rules, jobs
    assert {j["state"] for j in jobs} == {"COMPLETED"}, jobs
    assert {j["partition"] for j in jobs} == {"debug"}, jobs
    shard_comments = sorted(j["comment"] for j in jobs if j["comment"].startswith("rule_surface"))
    assert len(set(shard_comments)) == N_SHARDS * len(LAYERS), shard_comments  # distinct k per job
    allocated = cluster.ctld_log().count("sched: Allocate JobId=")
    assert allocated == len(jobs), f"slurmctld allocated {allocated} jobs, squeue lists {len(jobs)}"
    assert "SLURM jobid" in (slurm_dir / "snakemake.out").read_text()

    numbers = {
        "slurm_jobs": len(jobs),
        "jobs_by_rule": dict(rules),
        "job_elapsed": [j["time"] for j in jobs],
        "slurm_run_wall_s": round(wall["slurm"], 1),
        "local_run_wall_s": round(wall["local"], 1),
        "cluster_startup_s": round(cluster.startup_s, 1),
        "apt_install_s": round(cluster.install_s, 1),
    }
    print("slurm run:", json.dumps(numbers))
    for k, v in numbers.items():
        record_property(k, v)
