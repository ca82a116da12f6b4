"""Hessian directions: the top eigenvectors, split per target, normalized and stored like random ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from curvature_helpers import TARGET, exact_problem

from llmscape.curvature import hessian_directions
from llmscape.directions import load_directions, normalize, save_directions


@pytest.fixture(scope="module")
def problem():
    return exact_problem()


def test_hessian_directions_are_top_eigenvectors(problem, tmp_path):
    model = problem["model"]
    hd = hessian_directions(model, problem["data"], [TARGET], n_axes=2, seed=0, tol=1e-6)
    assert len(hd.directions) == 2 and hd.converged.all()
    np.testing.assert_allclose(hd.eigenvalues, problem["values"][:2], rtol=1e-3)
    weights = {TARGET: dict(model.named_parameters())[TARGET].detach().float()}
    for i, d in enumerate(hd.directions):
        assert set(d) == {TARGET} and d[TARGET].shape == weights[TARGET].shape and d[TARGET].dtype == torch.float32
        cos = abs(float(d[TARGET].double().reshape(-1) @ torch.from_numpy(problem["vectors"][:, i])))
        assert cos >= 0.999
        n = normalize(d, weights, "filter")
        torch.testing.assert_close(n[TARGET].norm(dim=1), weights[TARGET].norm(dim=1))
    save_directions(tmp_path / "h.h5", hd.directions, hd.recipe(), extra=hd.extra())
    back, attrs = load_directions(tmp_path / "h.h5")
    assert attrs["recipe"]["method"] == "hessian" and attrs["recipe"]["eigenvalues"] == pytest.approx(hd.eigenvalues)
