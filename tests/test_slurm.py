"""profiles/slurm on a real one-node SLURM cluster: a sharded tiny study, checked against a local run.

Brings up slurmctld/slurmd/munged with tests/slurm_cluster.py (installing Debian's packages
if missing), runs ``snakemake --profile profiles/slurm`` with shards > 1, so each shard is
its own SLURM job, and meanwhile ``snakemake --cores 2`` on the same config in another
directory. The merged landscapes must be equal, and slurmctld must have seen one job per
non-local rule instance (the shards among them) and none for the local merge.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from slurm_cluster import SlurmCluster, why_unavailable
from workflow_helpers import ROOT, run_snakemake, tiny_config, write_config

from llmscape.store import METRICS, Landscape

N_SHARDS = 3
TARGET = "results/tiny/landscapes/layers/last-random.h5"  # relative to each run's directory

pytestmark = pytest.mark.slurm


def sharded_config(model_dir) -> dict:
    """The shared tiny config cut to one landscape (last layer), in 3 shards of a 5x5 grid (9 + 8 + 8 points)."""
    config = tiny_config(model_dir, shards=N_SHARDS, points=5)
    config["studies"] = {"layers": {**config["studies"]["layers"], "layers": ["last"]}}
    return config


def timed_run(workdir, *args) -> float:
    t0 = time.monotonic()
    run_snakemake(workdir, *args, TARGET, timeout=300)
    return time.monotonic() - t0


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
        write_config(d, sharded_config(tiny_dir))

    with ThreadPoolExecutor(2) as pool:  # side by side: the SLURM run mostly waits
        on_slurm = pool.submit(timed_run, slurm_dir, "--profile", str(ROOT / "profiles" / "slurm"))
        local = pool.submit(timed_run, local_dir, "--cores", "2")
        wall = {"slurm": on_slurm.result(), "local": local.result()}

    # Equal results: every stored array of each merged landscape.
    a, b = Landscape.load(slurm_dir / TARGET), Landscape.load(local_dir / TARGET)
    assert a.attrs["n_shards"] == b.attrs["n_shards"] == N_SHARDS
    assert a.computed.all() and np.isfinite(a.loss).all()
    for key in (*METRICS, "per_sequence_loss", "computed"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=key)
    assert a.attrs["identity"] == b.attrs["identity"]

    # The jobs went through SLURM: one job per non-local rule instance, each shard its own job,
    # all completed; the local rules (merge) never reached the queue.
    jobs = cluster.jobs()
    rules = Counter(j["comment"].split("_wildcards_")[0].removeprefix("rule_") for j in jobs)
    assert rules["surface"] == N_SHARDS, jobs
    assert rules["directions"] == 1, jobs
    assert rules["prepare_model"] == 1, jobs
    assert "merge" not in rules and "all" not in rules, jobs
    assert {j["state"] for j in jobs} == {"COMPLETED"}, jobs
    assert {j["partition"] for j in jobs} == {"debug"}, jobs
    shard_comments = sorted(j["comment"] for j in jobs if j["comment"].startswith("rule_surface"))
    assert len(set(shard_comments)) == N_SHARDS, shard_comments  # distinct k per job
    allocated = cluster.ctld_log().count("sched: Allocate JobId=")
    assert allocated == len(jobs), f"slurmctld allocated {allocated} jobs, squeue lists {len(jobs)}"

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
