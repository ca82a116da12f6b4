"""Direction normalization, determinism and storage."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from llmscape.directions import (
    directions_sha256,
    gaussian,
    load_directions,
    normalize,
    random_directions,
    save_directions,
)
from llmscape.errors import LlmscapeError

W = {
    "a.weight": torch.randn(6, 4, generator=torch.Generator().manual_seed(0)),
    "b.weight": torch.randn(3, 5, generator=torch.Generator().manual_seed(1)) * 10,
    "norm.weight": torch.ones(4),
}


def test_filter_normalization_matches_each_row():
    d = normalize(gaussian({k: v.shape for k, v in W.items()}, seed=3, axis=0), W, "filter")
    for name in ("a.weight", "b.weight"):
        torch.testing.assert_close(d[name].norm(dim=1), W[name].norm(dim=1), rtol=1e-6, atol=0)
    torch.testing.assert_close(d["norm.weight"].norm(), W["norm.weight"].norm())  # 1-D: one row


def test_filter_normalization_of_transposed_matrices_per_column():
    # a Conv1D weight (GPT-2) is stored [in, out]: its filters (output units) are columns
    w = {"c_fc.weight": W["a.weight"].t().contiguous(), "b.weight": W["b.weight"]}
    g = gaussian({k: v.shape for k, v in w.items()}, seed=3, axis=0)
    d = normalize(g, w, "filter", transposed={"c_fc.weight"})
    torch.testing.assert_close(d["c_fc.weight"].norm(dim=0), w["c_fc.weight"].norm(dim=0), rtol=1e-6, atol=0)
    torch.testing.assert_close(d["b.weight"], normalize(g, w, "filter")["b.weight"])  # others as before
    (r,) = random_directions(w, 1, seed=3, norm="filter", transposed={"c_fc.weight"})
    torch.testing.assert_close(r["c_fc.weight"], d["c_fc.weight"])


def test_layer_and_model_normalization():
    g = gaussian({k: v.shape for k, v in W.items()}, seed=3, axis=0)
    layer = normalize(g, W, "layer")
    for name in W:
        assert layer[name].norm().item() == pytest.approx(W[name].norm().item(), rel=1e-6)
    model = normalize(g, W, "model")
    total = lambda t: torch.sqrt(sum(x.double().pow(2).sum() for x in t.values())).item()  # noqa: E731
    assert total(model) == pytest.approx(total(W), rel=1e-6)
    ratios = {name: (model[name] / g[name]).mean().item() for name in W}
    assert max(ratios.values()) == pytest.approx(min(ratios.values()), rel=1e-5)  # one global scale
    assert all(torch.equal(normalize(g, W, "none")[n], g[n]) for n in W)
    with pytest.raises(LlmscapeError, match="normalization"):
        normalize(g, W, "rows")


def test_deterministic_independent_of_other_targets_and_threads():
    both = random_directions(W, 2, seed=7, norm="filter")
    only_a = random_directions({"a.weight": W["a.weight"]}, 2, seed=7, norm="filter")
    assert torch.equal(both[0]["a.weight"], only_a[0]["a.weight"])
    assert not torch.equal(both[0]["a.weight"], both[1]["a.weight"])  # axes differ
    assert not torch.equal(both[0]["a.weight"], random_directions(W, 1, seed=8, norm="filter")[0]["a.weight"])
    code = (
        "import torch; torch.set_num_threads({n}); from llmscape.directions import gaussian;"
        "import hashlib; print(hashlib.sha256(gaussian({{'x': (300, 200)}}, 5, 0)['x'].numpy().tobytes()).hexdigest())"
    )
    sums = {
        subprocess.run([sys.executable, "-c", code.format(n=n)], capture_output=True, text=True, check=True).stdout
        for n in (1, 2)
    }
    assert len(sums) == 1


def test_hdf5_round_trip(tmp_path):
    dirs = random_directions(W, 2, seed=1, norm="layer")
    save_directions(tmp_path / "d.h5", dirs, {"method": "random", "seed": 1}, extra={"eigenvalues": [3.0, 1.0]})
    back, attrs = load_directions(tmp_path / "d.h5")
    assert attrs["recipe"] == {"method": "random", "seed": 1}
    assert attrs["sha256"] == directions_sha256(dirs)
    for a, b in zip(dirs, back, strict=True):
        assert set(a) == set(b) and all(np.array_equal(a[n].numpy(), b[n].numpy()) for n in a)
