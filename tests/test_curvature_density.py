"""Hutchinson trace and SLQ spectral density against the exact Hessian."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from curvature_helpers import exact_problem, operator

from llmscape.curvature import HutchinsonTrace, SpectralDensity


@pytest.fixture(scope="module")
def problem():
    return exact_problem()


def test_hutchinson_trace_within_three_standard_errors(problem):
    est = HutchinsonTrace(n_probes=40, seed=0).estimate(operator(problem))
    exact = float(torch.trace(problem["H"]))
    assert est.se > 0 and len(est.samples) == 40
    assert abs(est.trace - exact) <= 3 * est.se, (est.trace, exact, est.se)


def test_slq_density_integrates_to_one_and_has_mean_trace_over_n(problem):
    op = operator(problem)
    density = SpectralDensity(n_probes=3, n_steps=op.n, seed=0).estimate(op)
    assert density.integral() == pytest.approx(1.0, abs=1e-6)
    assert density.mean() == pytest.approx(density.quadrature_mean(), rel=1e-6)
    # SLQ and Hutchinson with one seed draw the same Rademacher probes: the density's mean is
    # exactly the Hutchinson estimate of tr(H) / n from those probes
    hutchinson = HutchinsonTrace(n_probes=3, seed=0).estimate(op)
    assert density.mean() == pytest.approx(hutchinson.trace / op.n, rel=0.01)
    assert density.quadrature_mean() == pytest.approx(hutchinson.trace / op.n, rel=1e-6)
    # (so its error against the exact tr(H) / n is Hutchinson's, tested above; 1% of the exact value
    # would need ~1e5 probes here: the trace is small beside the Hessian's off-diagonal mass)
    assert density.nodes.shape == density.weights.shape == (3, op.n)
    np.testing.assert_allclose(density.weights.sum(axis=1), 1.0, rtol=1e-10)
    # with a full Krylov space the nodes are the exact eigenvalues
    np.testing.assert_allclose(np.sort(density.nodes[0]), np.sort(problem["values"]), rtol=1e-6, atol=1e-6)
