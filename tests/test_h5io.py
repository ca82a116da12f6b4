"""Every results file kind goes through llmscape.h5io: format/version checked on read, atomic write."""

import h5py
import numpy as np
import pytest
import torch

from llmscape import h5io
from llmscape.curvature import Spectrum, load_spectrum, save_spectrum
from llmscape.data import EvalSet, load_eval_set, save_eval_set
from llmscape.directions import load_directions, save_directions
from llmscape.errors import LlmscapeError
from llmscape.store import Landscape


def _files(tmp_path):
    """One small file of each kind that has a Python writer here, keyed by kind."""
    paths = {k: tmp_path / f"{k}.h5" for k in ("landscape", "directions", "eval-set", "spectrum")}
    Landscape.empty([np.linspace(-1, 1, 3)], 2, {"provenance": {"model": {"sha256": "x"}}}).save(paths["landscape"])
    save_directions(paths["directions"], [{"w": torch.ones(2, 3)}], {"method": "random"})
    ids = torch.tensor([[1, 2, 3]])
    save_eval_set(paths["eval-set"], EvalSet(ids, torch.ones_like(ids), ["a b c"]), {"spec": {"kind": "prompts"}})
    save_spectrum(paths["spectrum"], Spectrum(["w"], 6, lambda_max=2.0, lambda_max_residual=0.0), {"study": "s"})
    return paths


LOADERS = {
    "landscape": Landscape.load,
    "directions": load_directions,
    "eval-set": load_eval_set,
    "spectrum": load_spectrum,
}


def test_each_kind_is_marked_and_round_trips(tmp_path):
    paths = _files(tmp_path)
    for kind, path in paths.items():
        with h5py.File(path) as f:
            assert f.attrs["format"] == f"llmscape-{kind}"
            assert f.attrs["format_version"] == h5io.VERSIONS[kind]
    directions, attrs = load_directions(paths["directions"])
    assert torch.equal(directions[0]["w"], torch.ones(2, 3)) and attrs["recipe"] == {"method": "random"}
    assert load_eval_set(paths["eval-set"]).texts == ["a b c"]
    spectrum, provenance = load_spectrum(paths["spectrum"])
    assert (spectrum.targets, spectrum.lambda_max, provenance) == (["w"], 2.0, {"study": "s"})
    with h5io.read(paths["eval-set"], "eval-set") as f:
        assert h5io.get_attrs(f) == {"spec": {"kind": "prompts"}}


def test_a_file_of_another_kind_or_version_is_refused_by_name(tmp_path):
    paths = _files(tmp_path)
    for kind, load in LOADERS.items():
        other = next(p for k, p in paths.items() if k != kind)
        with pytest.raises(LlmscapeError, match=rf"{other} is not an llmscape {kind} file"):
            load(other)
    with h5py.File(paths["directions"], "a") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(LlmscapeError, match=r"format version 99, this llmscape reads version 1: delete it and rerun"):
        load_directions(paths["directions"])


def test_truncated_and_missing_datasets_are_clear_errors(tmp_path):
    paths = _files(tmp_path)
    for kind, load in LOADERS.items():
        cut = tmp_path / f"cut-{kind}.h5"
        cut.write_bytes(paths[kind].read_bytes()[:600])
        with pytest.raises(LlmscapeError, match=rf"{cut} is unreadable"):
            load(cut)
    with h5py.File(paths["eval-set"], "a") as f:
        del f["texts"]
    with pytest.raises(LlmscapeError, match=rf"{paths['eval-set']} is unreadable \(eval-set file incomplete"):
        load_eval_set(paths["eval-set"])


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    paths = _files(tmp_path)
    before = paths["directions"].read_bytes()
    with pytest.raises(RuntimeError, match="boom"):
        with h5io.write(paths["directions"], "directions") as f:
            f.create_dataset("x", data=np.zeros(3))
            raise RuntimeError("boom")
    assert paths["directions"].read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths.values())


def test_reserved_attributes_cannot_be_overwritten(tmp_path):
    with pytest.raises(ValueError, match="format_version"):
        with h5io.write(tmp_path / "x.h5", "landscape") as f:
            h5io.set_attrs(f, {"format_version": 7})
    assert not list(tmp_path.iterdir())
