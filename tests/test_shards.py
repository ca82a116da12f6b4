"""Sharded grids: K shards merge to exactly the unsharded grid; bad shards and checkpoints are caught."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from llmscape.errors import LlmscapeError
from llmscape.store import METRICS, Landscape, merge
from llmscape.surface import compute_shard, identity

GRID = [np.linspace(-1.0, 1.0, 5), np.linspace(-0.5, 0.5, 4)]  # 20 points: 3 and 7 do not divide it
PROVENANCE = {"test": "shards", "seed": 0, "norm": "filter", "grid": [5, 4]}


@pytest.fixture(scope="module")
def data(tiny):
    from llmscape.data import tokenize

    return tokenize(["hello world, this is a test", "short one", "loss landscapes of llms!"], tiny[1])


@pytest.fixture(scope="module")
def engine(tiny, data):
    import torch

    from llmscape.directions import random_directions
    from llmscape.engine.reference import ReferenceEngine

    model, _ = tiny
    params = dict(model.named_parameters())
    names = ("model.layers.1.mlp.up_proj.weight", "model.layers.1.self_attn.q_proj.weight")
    weights = {n: params[n].detach() for n in names}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is fastest, and far faster on a busy machine
    yield ReferenceEngine(model, data, random_directions(weights, 2, seed=0, norm="filter"))
    torch.set_num_threads(threads)


def run_shards(engine, data, out_dir, n_shards, provenance=PROVENANCE):
    paths = [out_dir / f"shard-{k}-of-{n_shards}.h5" for k in range(n_shards)]
    for k, p in enumerate(paths):
        compute_shard(engine, GRID, data.n_tokens, p, provenance, shard=k, n_shards=n_shards, checkpoint_s=0)
    return paths


def assert_same_grid(a: Landscape, b: Landscape):
    for i in range(len(GRID)):
        np.testing.assert_array_equal(a.axes[i], b.axes[i])
    for key in (*METRICS, "per_sequence_loss", "computed"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=key)


@pytest.fixture(scope="module")
def unsharded(engine, data, tmp_path_factory):
    (path,) = run_shards(engine, data, tmp_path_factory.mktemp("k1"), 1)
    return Landscape.load(path)


@pytest.mark.parametrize("n_shards", [1, 3, 7])
def test_merged_shards_equal_unsharded_run(engine, data, tmp_path, unsharded, n_shards):
    assert unsharded.computed.all() and np.isfinite(unsharded.loss).all()
    paths = run_shards(engine, data, tmp_path / f"k{n_shards}", n_shards)
    for k, p in enumerate(paths):  # each shard holds exactly its own points
        shard = Landscape.load(p)
        assert shard.attrs["shard"] == [k, n_shards]
        assert shard.computed.sum() == len(np.array_split(np.arange(20), n_shards)[k])
    merged = merge(paths)
    assert merged.attrs["n_shards"] == n_shards
    assert "shard" not in merged.attrs and "points_computed_this_run" not in merged.attrs
    assert_same_grid(merged, unsharded)
    merged.save(tmp_path / "merged.h5")  # and it survives a round trip through the file
    assert_same_grid(Landscape.load(tmp_path / "merged.h5"), unsharded)


def test_merge_missing_shard_is_named(engine, data, tmp_path):
    paths = run_shards(engine, data, tmp_path, 3)
    with pytest.raises(LlmscapeError, match=r"shard 1 of 3"):
        merge([paths[0], paths[2]])
    paths[1].unlink()
    with pytest.raises(LlmscapeError, match=str(paths[1])):
        merge(paths)


def test_merge_incomplete_shard_is_named(engine, data, tmp_path):
    paths = run_shards(engine, data, tmp_path, 3)
    shard = Landscape.load(paths[2])
    shard.computed.ravel()[np.flatnonzero(shard.computed)[-1]] = False  # as a checkpoint would hold it
    shard.save(paths[2])
    with pytest.raises(LlmscapeError, match=rf"shard {paths[2]} is incomplete: 1 of its \d+ points"):
        merge(paths)


def test_merge_rejects_foreign_and_mismatched_shards(engine, data, tmp_path):
    paths = run_shards(engine, data, tmp_path / "a", 3)
    other = run_shards(engine, data, tmp_path / "b", 3, provenance={**PROVENANCE, "seed": 1})
    with pytest.raises(LlmscapeError, match=rf"shard {other[1]} belongs to a different landscape"):
        merge([paths[0], other[1], paths[2]])
    seven = run_shards(engine, data, tmp_path / "c", 7)
    with pytest.raises(LlmscapeError, match=rf"{seven[1]} is shard 1 of 7"):
        merge([paths[0], seven[1], paths[2]])
    with pytest.raises(LlmscapeError, match="more than once"):
        merge([paths[0], paths[1], paths[1], paths[2]])


def _partial_for(out):
    return out.with_name(out.name + ".partial")


def test_corrupt_partial_is_discarded_and_recomputed(engine, data, tmp_path, unsharded, caplog):
    out = tmp_path / "shard-0-of-1.h5"
    _partial_for(out).write_bytes(b"\x89HDF\r\n\x1a\n" + b"garbage" * 100)
    with caplog.at_level(logging.WARNING, logger="llmscape"):
        result = compute_shard(engine, GRID, data.n_tokens, out, PROVENANCE, checkpoint_s=0)
    assert "discarding unreadable checkpoint" in caplog.text
    assert result.attrs["points_computed_this_run"] == 20
    assert not _partial_for(out).exists()
    assert_same_grid(Landscape.load(out), unsharded)


def test_foreign_partial_is_discarded_and_recomputed(engine, data, tmp_path, unsharded, caplog):
    out = tmp_path / "shard-0-of-1.h5"
    # A checkpoint of another landscape (different seed), half done, with wrong values planted.
    foreign = Landscape.empty(
        GRID, len(data), {"identity": identity({**PROVENANCE, "seed": 9}), "shard": [0, 1], "wall_time_s": 0.0}
    )
    half = np.arange(10)
    foreign.fill(
        half,
        {
            "loss": np.full(10, 123.0),
            "token_loss": np.zeros(10),
            "accuracy": np.zeros(10),
            "per_sequence_loss": np.zeros((10, len(data))),
        },
    )
    foreign.save(_partial_for(out))
    with caplog.at_level(logging.WARNING, logger="llmscape"):
        result = compute_shard(engine, GRID, data.n_tokens, out, PROVENANCE, checkpoint_s=0)
    assert "different config/model/directions" in caplog.text
    assert result.attrs["points_computed_this_run"] == 20
    assert_same_grid(Landscape.load(out), unsharded)


def test_partial_of_same_landscape_is_reused(engine, data, tmp_path, unsharded):
    """A checkpoint with the right identity is resumed; only missing points are computed."""
    out = tmp_path / "shard-0-of-1.h5"
    done = Landscape.load(run_shards(engine, data, tmp_path / "ref", 1)[0])
    done.computed.ravel()[7:] = False
    done.attrs.pop("points_computed_this_run")
    done.save(_partial_for(out))
    stale = tmp_path / f".{out.name}.partial.tmp-99999"  # a save cut short by a kill
    stale.write_bytes(b"half a file")
    result = compute_shard(engine, GRID, data.n_tokens, out, PROVENANCE, checkpoint_s=0)
    assert result.attrs["points_computed_this_run"] == 13
    assert not stale.exists()
    assert_same_grid(Landscape.load(out), unsharded)


READ_ONLY_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    from pathlib import Path
    from llmscape.errors import LlmscapeError
    from llmscape.loss import SequenceStats
    from llmscape.surface import compute_shard

    class Constant:
        block_size = 2
        def evaluate(self, coeffs):
            return SequenceStats(np.ones((len(coeffs), 2)), np.ones((len(coeffs), 2)))

    out = Path(sys.argv[1]) / "shard-0-of-1.h5"
    try:
        compute_shard(Constant(), [np.linspace(-1, 1, 3)] * 2, np.array([3, 4]), out, {"x": 1}, checkpoint_s=0)
    except LlmscapeError as exc:
        print("LlmscapeError:", exc)
        sys.exit(3)
    print("no error")
""")


def test_read_only_directory_gives_clear_error(tmp_path):
    """Root ignores directory permissions, so as root the writer runs without CAP_DAC_OVERRIDE."""
    target = tmp_path / "out"
    target.mkdir()
    script = tmp_path / "write.py"
    script.write_text(READ_ONLY_SCRIPT)
    cmd = [sys.executable, str(script), str(target)]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv (util-linux): cannot make a directory read-only to us")
        caps = "-dac_override,-dac_read_search"
        cmd = ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}", *cmd]
    target.chmod(0o555)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    finally:
        target.chmod(0o755)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "LlmscapeError: cannot write" in proc.stdout and "Permission denied" in proc.stdout, proc.stdout
    assert str(target) in proc.stdout
    leftovers = os.listdir(target)
    assert leftovers == [], leftovers  # no shard, no checkpoint, no temporary file
