"""profiles/slurm on a real one-node SLURM cluster: a sharded tiny study, checked against a local run.

Brings up slurmctld/slurmd/munged with tests/slurm_cluster.py (installing Debian's packages
if missing), runs ``snakemake --profile profiles/slurm`` with shards > 1, so each shard is
its own SLURM job, and meanwhile ``snakemake --cores 2`` on the same config in another
directory. Part-way through, shard 0's job is cancelled (scancel): the profile's retries
must resubmit it and the new job must resume from the checkpoint. The merged landscapes
must be equal, and slurmctld must have seen one job per non-local rule instance (the
shards among them, shard 0 twice) and none for the local rules (prepare_data, merge).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from slurm_cluster import SlurmCluster, why_unavailable
from workflow_helpers import ROOT, run_snakemake, tiny_config, write_config

from llmscape.store import METRICS, Landscape

N_SHARDS = 3
POINTS = 41  # 1681 points, 561 in shard 0 at one point per block: long enough to cancel it part-way
TARGET = "results/tiny/landscapes/layers/last-random.h5"  # relative to each run's directory
SHARD0 = "results/tiny/landscapes/layers/last-random/shard-0-of-3.h5"

pytestmark = pytest.mark.slurm


def sharded_config(model_dir) -> dict:
    """The shared tiny config cut to one landscape (last layer) in 3 shards; checkpoints after every point."""
    config = tiny_config(model_dir, shards=N_SHARDS, points=POINTS)
    config["studies"] = {"layers": {**config["studies"]["layers"], "layers": ["last"]}}
    # The reference engine evaluates (and checkpoints) one point at a time; the fast engine
    # finishes a tiny shard in one block, before the test can cancel it part-way.
    config["engine"]["kind"] = "reference"
    return config


def timed_run(workdir, *args) -> float:
    t0 = time.monotonic()
    run_snakemake(workdir, *args, TARGET, timeout=300)
    return time.monotonic() - t0


def cancel_shard0_partway(cluster, workdir, run, min_points: int = 20, timeout: float = 240) -> dict:
    """scancel shard 0's SLURM job once its checkpoint holds ``min_points``; its computed count then."""
    partial = workdir / f"{SHARD0}.partial"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if run.done():
            run.result()  # raises the run's error, if any
            pytest.fail("the SLURM run finished before shard 0 could be cancelled part-way")
        try:
            done = int(Landscape.load(partial).computed.sum()) if partial.exists() else 0
        except Exception:  # replaced while we read it
            done = 0
        if done >= min_points:
            job = [j for j in cluster.jobs() if j["comment"].endswith("_0_3") and j["state"] == "RUNNING"]
            assert len(job) == 1, cluster.jobs()
            subprocess.run(["scancel", job[0]["id"]], check=True)
            while next(j for j in cluster.jobs() if j["id"] == job[0]["id"])["state"] != "CANCELLED":
                time.sleep(0.1)
            time.sleep(1.0)  # the job's processes are gone; its last checkpoint is final
            points = int(Landscape.load(partial).computed.sum())
            assert not (workdir / SHARD0).exists(), "shard 0 finished despite the cancel"
            return {"job": job[0]["id"], "points_done": points}
        time.sleep(0.1)
    pytest.fail(f"no checkpoint of shard 0 with {min_points} points after {timeout} s")


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
        cancelled = cancel_shard0_partway(cluster, slurm_dir, on_slurm)
        wall = {"slurm": on_slurm.result(), "local": local.result()}

    # Equal results: every stored array of each merged landscape.
    a, b = Landscape.load(slurm_dir / TARGET), Landscape.load(local_dir / TARGET)
    assert a.attrs["n_shards"] == b.attrs["n_shards"] == N_SHARDS
    assert a.computed.all() and np.isfinite(a.loss).all()
    for key in (*METRICS, "per_sequence_loss", "computed"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=key)
    assert a.attrs["identity"] == b.attrs["identity"]

    # The jobs went through SLURM: one job per non-local rule instance, each shard its own job,
    # plus the retry of the cancelled shard; the local rules (prepare_data, merge) never reached the queue.
    jobs = cluster.jobs()
    rules = Counter(j["comment"].split("_wildcards_")[0].removeprefix("rule_") for j in jobs)
    assert rules["surface"] == N_SHARDS + 1, jobs
    assert rules["directions"] == 1 and rules["prepare_model"] == 1, jobs
    assert not {"prepare_data", "merge", "all"} & set(rules), jobs
    assert sorted(j["state"] for j in jobs) == ["CANCELLED"] + ["COMPLETED"] * (len(jobs) - 1), jobs
    assert {j["partition"] for j in jobs} == {"debug"}, jobs
    shard_jobs = Counter(j["comment"].rsplit("_", 2)[-2] for j in jobs if j["comment"].startswith("rule_surface"))
    assert shard_jobs == {"0": 2, "1": 1, "2": 1}, shard_jobs  # each shard its own job; shard 0 twice
    allocated = cluster.ctld_log().count("sched: Allocate JobId=")
    assert allocated == len(jobs), f"slurmctld allocated {allocated} jobs, squeue lists {len(jobs)}"

    # The retry resumed from the cancelled job's checkpoint: it computed only the points missing there.
    shard0 = Landscape.load(slurm_dir / SHARD0)
    size = len(np.array_split(np.arange(POINTS**2), N_SHARDS)[0])
    assert shard0.attrs["points_computed_this_run"] == size - cancelled["points_done"], cancelled
    assert not (slurm_dir / f"{SHARD0}.partial").exists()

    numbers = {
        "slurm_jobs": len(jobs),
        "shard0_points": size,
        "shard0_points_before_cancel": cancelled["points_done"],
        "shard0_points_computed_by_retry": shard0.attrs["points_computed_this_run"],
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
