"""Lanczos and power iteration: top eigenpairs of the exact Hessian and of explicit matrices."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from curvature_helpers import exact_problem, operator

from llmscape.curvature import Lanczos, MatrixOperator, PowerIteration, eigensolver
from llmscape.errors import LlmscapeError


@pytest.fixture(scope="module")
def problem():
    return exact_problem()


def _check_top3(pairs, problem):
    exact = problem["values"][:3]
    np.testing.assert_allclose(pairs.eigenvalues, exact, rtol=1e-3)
    for i in range(3):
        cos = abs(float(pairs.eigenvectors[i] @ torch.from_numpy(problem["vectors"][:, i])))
        assert cos >= 0.999, (i, cos)
    assert pairs.converged.all()
    assert np.all(pairs.residuals <= pairs.tol * np.abs(pairs.eigenvalues))
    assert pairs.n_hvp > 0 and len(pairs.history) > 0


def test_exact_problem_is_well_posed(problem):
    # the checks below need distinct top eigenvalues and a mixed-sign spectrum
    v = problem["values"]
    assert abs(v[1] / v[0]) < 0.9 and abs(v[2] / v[1]) < 0.9
    assert v.min() < 0 < v.max()


def test_lanczos_top3_matches_exact(problem):
    _check_top3(Lanczos(tol=1e-6, max_iter=100, seed=0).eigenpairs(operator(problem), 3), problem)


def test_power_iteration_top3_matches_exact(problem):
    _check_top3(PowerIteration(tol=1e-5, max_iter=500, seed=0).eigenpairs(operator(problem), 3), problem)


def test_lanczos_algebraic_ends_on_explicit_matrix():
    values = np.array([5.0, -7.0, 3.0, -1.0, 0.5, 2.0])
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((6, 6)))
    op = MatrixOperator(q @ np.diag(values) @ q.T)
    assert Lanczos(tol=1e-8, which="magnitude").eigenpairs(op, 2).eigenvalues == pytest.approx([-7.0, 5.0])
    assert Lanczos(tol=1e-8, which="largest").eigenpairs(op, 2).eigenvalues == pytest.approx([5.0, 3.0])
    low = Lanczos(tol=1e-8, which="smallest").eigenpairs(op, 1)
    assert low.eigenvalues == pytest.approx([-7.0]) and low.converged.all()
    with pytest.raises(LlmscapeError):
        eigensolver("power", which="smallest")
    # a rank-1 matrix: Lanczos breaks down after one step and restarts to find a second pair
    u = q[:, 0]
    pairs = Lanczos(tol=1e-8).eigenpairs(MatrixOperator(4.0 * np.outer(u, u)), 2)
    assert pairs.eigenvalues[0] == pytest.approx(4.0) and abs(pairs.eigenvalues[1]) < 1e-10


def test_more_eigenpairs_than_parameters_is_an_error(problem):
    op = operator(problem)
    for solver in (Lanczos(), PowerIteration()):
        with pytest.raises(LlmscapeError, match="at most 128"):
            solver.eigenpairs(op, op.n + 1)
    assert op.n_hvp == 0  # refused before any work


def test_non_convergence_is_reported_not_raised(problem):
    op = operator(problem)
    for solver in (Lanczos(tol=1e-8, max_iter=4), PowerIteration(tol=1e-8, max_iter=2)):
        pairs = solver.eigenpairs(op, 3)
        assert not pairs.converged.all()
        assert np.all(np.isfinite(pairs.residuals)) and np.all(pairs.residuals > 0)
    # a Krylov space smaller than k: the pairs it cannot hold come back NaN, not converged
    short = Lanczos(max_iter=2).eigenpairs(op, 3)
    assert np.isnan(short.eigenvalues[2]) and not short.converged[2] and short.converged.sum() == 0
