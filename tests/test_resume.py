"""Crash-safe resume: SIGKILL a shard computation part-way, rerun it, lose nothing and redo nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from llmscape.store import METRICS, Landscape

N_AXIS = 12  # 144 points
KILL_AFTER = 30  # points that must be checkpointed before the kill

# One shard of a landscape on the tiny model, checkpointing after every point.
# argv: model_dir out delay_s. A delay per point makes the kill land part-way on any machine.
SCRIPT = textwrap.dedent("""
    import json, logging, sys, time
    import numpy as np
    import torch
    from llmscape.data import tokenize
    from llmscape.directions import random_directions
    from llmscape.engine.reference import ReferenceEngine
    from llmscape.models import load_prepared
    from llmscape.surface import compute_shard

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    torch.set_num_threads(1)
    model_dir, out, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
    model, tokenizer = load_prepared(model_dir)
    data = tokenize(["hello world, this is a test", "short one", "loss landscapes of llms!"], tokenizer)
    params = dict(model.named_parameters())
    names = ["model.layers.2.mlp.down_proj.weight", "model.layers.2.self_attn.v_proj.weight"]
    directions = random_directions({n: params[n].detach() for n in names}, 2, seed=3, norm="filter")

    class Slow(ReferenceEngine):
        def evaluate(self, coeffs):
            time.sleep(delay)
            return super().evaluate(coeffs)

    engine = Slow(model, data, directions)
    grid = [np.linspace(-1, 1, N_AXIS), np.linspace(-1, 1, N_AXIS)]
    provenance = {"test": "resume", "seed": 3, "names": names, "grid": [N_AXIS, N_AXIS]}
    state = compute_shard(engine, grid, data.n_tokens, out, provenance, shard=0, n_shards=1, checkpoint_s=0)
    print(json.dumps({"points_computed_this_run": state.attrs["points_computed_this_run"]}))
""").replace("N_AXIS", str(N_AXIS))


def _run(script, model_dir, out, delay=0.0, **kw):
    return subprocess.Popen(
        [sys.executable, str(script), str(model_dir), str(out), str(delay)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def _computed(path):
    try:
        return Landscape.load(path).computed
    except Exception:  # replaced under us or not there yet: try again
        return None


@pytest.mark.slow
def test_sigkill_then_resume_recomputes_nothing(tiny_dir, tmp_path, record_property):
    script = tmp_path / "shard.py"
    script.write_text(SCRIPT)
    out = tmp_path / "killed" / "shard-0-of-1.h5"
    partial = out.with_name(out.name + ".partial")
    total = N_AXIS * N_AXIS

    t0 = time.monotonic()
    proc = _run(script, tiny_dir, out, delay=0.03)
    try:
        while True:
            assert proc.poll() is None, f"finished before the kill; make the grid bigger\n{proc.stderr.read()}"
            assert time.monotonic() - t0 < 120, "no checkpoint with enough points after 120 s"
            mask = _computed(partial) if partial.exists() else None
            if mask is not None and mask.sum() >= KILL_AFTER:
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists(), "a killed run must not leave a file that reads as complete"

    before = Landscape.load(partial).computed  # read after the kill, before the rerun
    n_before = int(before.sum())
    assert KILL_AFTER <= n_before < total
    # Points are done in order: the checkpoint holds a prefix of the grid.
    assert before.ravel()[:n_before].all() and not before.ravel()[n_before:].any()

    rerun = _run(script, tiny_dir, out)
    uninterrupted = _run(script, tiny_dir, tmp_path / "clean" / "shard-0-of-1.h5")
    r_out, r_err = rerun.communicate(timeout=300)
    u_out, u_err = uninterrupted.communicate(timeout=300)
    assert rerun.returncode == 0, r_err
    assert uninterrupted.returncode == 0, u_err
    recomputed = json.loads(r_out.strip().splitlines()[-1])["points_computed_this_run"]
    assert f"resuming, {n_before} of {total} points already computed" in r_err

    resumed = Landscape.load(out)
    clean = Landscape.load(tmp_path / "clean" / "shard-0-of-1.h5")
    assert resumed.attrs["points_computed_this_run"] == recomputed == total - n_before
    assert clean.attrs["points_computed_this_run"] == total
    assert resumed.computed.all()
    for key in (*METRICS, "per_sequence_loss"):
        np.testing.assert_array_equal(getattr(resumed, key), getattr(clean, key), err_msg=key)
    assert not partial.exists()
    leftovers = sorted(p.name for p in out.parent.iterdir() if p != out)
    assert leftovers == [], leftovers  # no checkpoint, no temporary file from the killed save

    counts = {
        "points_total": total,
        "points_before_kill": n_before,
        "points_recomputed_on_rerun": recomputed,
        "test_wall_s": round(time.monotonic() - t0, 1),
    }
    print("resume counts:", json.dumps(counts))
    for k, v in counts.items():
        record_property(k, v)
