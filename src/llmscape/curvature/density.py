"""The whole spectrum from random probes: trace (Hutchinson) and spectral density (SLQ).

Hutchinson: for z with independent Rademacher (+-1) entries, E[z z^T] = I, so

    tr(H) = E[z^T H z]  ~  1/m sum_i z_i^T H z_i,     SE = std_i(z_i^T H z_i) / sqrt(m),

one product per probe.

Stochastic Lanczos quadrature (Lin et al. 2016; Ghorbani et al. 2019): the spectral
density phi(t) = 1/n sum_i delta(t - lambda_i) satisfies int f phi = tr(f(H)) / n
= E[v^T f(H) v] for v = z / ||z||. m Lanczos steps from v give T_m = S diag(theta) S^T,
and v^T f(H) v ~ sum_l w_l f(theta_l) with w_l = S_1l^2 (Gauss quadrature, exact for
polynomials up to degree 2m - 1). Averaged over P probes,

    phi(t)  ~  1/P sum_p sum_l w_pl delta(t - theta_pl),

and each delta is broadened into a Gaussian N(t; theta_pl, sigma^2) to draw it on a grid.
Its mean, 1/P sum_p sum_l w_pl theta_pl = 1/P sum_p z_p^T H z_p / n, is the Hutchinson
estimate of tr(H) / n from the same probes: both draw them from one seeded generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from llmscape.curvature.eigen import Lanczos, tridiagonal
from llmscape.errors import LlmscapeError

# grid points of a drawn density
N_GRID = 2000
# Gaussian broadening sigma, as a fraction of the spread of all nodes
SIGMA_REL = 0.01


def rademacher(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 2, (n,), generator=generator).to(torch.float64) * 2 - 1


@dataclass
class TraceEstimate:
    trace: float
    se: float  # standard error of the mean over probes
    samples: np.ndarray  # z^T H z per probe


class HutchinsonTrace:
    """tr(H) ~ mean of z^T H z over Rademacher probes z (seeded), with its standard error."""

    def __init__(self, n_probes: int = 100, seed: int = 0):
        if n_probes < 2:
            raise LlmscapeError("Hutchinson needs at least 2 probes for a standard error")
        self.n_probes, self.seed = n_probes, seed

    def estimate(self, op) -> TraceEstimate:
        gen = torch.Generator().manual_seed(self.seed)
        samples = np.empty(self.n_probes)
        for i in range(self.n_probes):
            z = rademacher(op.n, gen)
            samples[i] = float(z @ op.matvec(z))
        return TraceEstimate(float(samples.mean()), float(samples.std(ddof=1) / math.sqrt(self.n_probes)), samples)


@dataclass
class DensityEstimate:
    """Spectral density by stochastic Lanczos quadrature.

    nodes/weights [probes, steps]: Ritz values and squared first components per probe
    (NaN / 0 where a probe's Krylov space was smaller). The density on ``grid`` is
    mean_p sum_j w_pj N(t; theta_pj, sigma^2).
    """

    grid: np.ndarray
    density: np.ndarray
    nodes: np.ndarray
    weights: np.ndarray
    sigma: float

    def integral(self) -> float:
        return float(np.trapezoid(self.density, self.grid))

    def mean(self) -> float:
        """Mean eigenvalue of the density (an estimate of tr(H) / n)."""
        return float(np.trapezoid(self.grid * self.density, self.grid) / self.integral())

    def quadrature_mean(self) -> float:
        """The same mean straight from nodes and weights, without the grid."""
        w = np.nan_to_num(self.weights * self.nodes)
        return float(w.sum(axis=1).mean())


class SpectralDensity:
    """Stochastic Lanczos quadrature: ``n_probes`` normalized Rademacher starts, ``n_steps`` Lanczos steps each.

    The Gaussian broadening sigma is ``SIGMA_REL`` times the spread of all nodes; the
    grid spans the nodes +- 6 sigma.
    """

    def __init__(self, n_probes: int = 10, n_steps: int = 40, seed: int = 0):
        self.n_probes, self.n_steps, self.seed = n_probes, n_steps, seed

    def estimate(self, op) -> DensityEstimate:
        gen = torch.Generator().manual_seed(self.seed)
        steps = min(self.n_steps, op.n)
        nodes = np.full((self.n_probes, steps), np.nan)
        weights = np.zeros((self.n_probes, steps))
        for p in range(self.n_probes):
            v0 = rademacher(op.n, gen)
            alpha, beta, _, _ = Lanczos(seed=self.seed + 1 + p).run(op, steps, v0=v0)
            theta, s = np.linalg.eigh(tridiagonal(alpha, beta))
            nodes[p, : len(theta)] = theta
            weights[p, : len(theta)] = s[0] ** 2
        finite = nodes[np.isfinite(nodes)]
        lo, hi = float(finite.min()), float(finite.max())
        sigma = SIGMA_REL * max(hi - lo, abs(hi), 1e-12)
        grid = np.linspace(lo - 6 * sigma, hi + 6 * sigma, N_GRID)
        density = gaussian_broadened_density(grid, nodes, weights, sigma)
        return DensityEstimate(grid, density, nodes, weights, sigma)


def gaussian_broadened_density(grid: np.ndarray, nodes: np.ndarray, weights: np.ndarray, sigma: float) -> np.ndarray:
    """mean over probes of sum_j w_j N(grid; node_j, sigma^2)."""
    ok = np.isfinite(nodes) & (weights > 0)
    x, w = nodes[ok], weights[ok]
    kernel = np.exp(-0.5 * ((grid[:, None] - x[None, :]) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
    return kernel @ w / nodes.shape[0]
