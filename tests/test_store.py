"""The landscape file: plain-h5py layout, NaN semantics, atomic writes."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from llmscape.errors import LlmscapeError
from llmscape.store import Landscape


def make(tmp_path, attrs=None):
    ls = Landscape.empty([np.linspace(-1, 1, 3), np.linspace(-2, 2, 4)], 2, attrs or {"provenance": {"seed": 3}})
    ls.fill(
        np.array([0, 5]),
        {
            "loss": np.array([1.0, np.inf]),
            "token_loss": np.array([1.5, 2.5]),
            "accuracy": np.array([0.5, 0.0]),
            "per_sequence_loss": np.array([[1.0, 1.0], [np.inf, 3.0]]),
        },
    )
    ls.save(tmp_path / "x.h5")
    return ls


def test_round_trip_with_plain_h5py(tmp_path):
    make(tmp_path)
    with h5py.File(tmp_path / "x.h5") as f:
        assert f.attrs["format"] == "llmscape-landscape" and f.attrs["format_version"] == 1
        assert f["axes/0"].shape == (3,) and f["axes/1"].shape == (4,)
        loss, computed = f["loss"][...], f["computed"][...]
        assert loss.shape == (3, 4) and f["per_sequence_loss"].shape == (3, 4, 2)
        assert loss[0, 0] == 1.0 and np.isinf(loss[1, 1])  # overflow is stored as inf
        assert computed.sum() == 2 and np.isnan(loss[~computed]).all()  # NaN = not computed
    back = Landscape.load(tmp_path / "x.h5")
    assert back.attrs["provenance"] == {"seed": 3}
    assert np.array_equal(back.computed, make(tmp_path).computed)


def test_foreign_and_missing_files_are_clear_errors(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(LlmscapeError, match="not an llmscape landscape"):
        Landscape.load(tmp_path / "other.h5")
    (tmp_path / "trunc.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(LlmscapeError, match="unreadable"):
        Landscape.load(tmp_path / "trunc.h5")


def test_no_temporary_left_behind(tmp_path):
    make(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["x.h5"]
