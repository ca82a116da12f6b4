"""Geometry of a training trajectory in parameter space: plane projections, Gram-matrix PCA, roughness.

Vectors are ``Direction``s ({parameter name: tensor}); every inner product is taken in
float64, tensor by tensor, so nothing the size of the whole parameter vector is ever
flattened or formed as a matrix.

Plane projection. For a step delta and a basis b_1, b_2 (not necessarily orthogonal),
the in-plane part is c_1 b_1 + c_2 b_2 with G c = r, G_ij = <b_i, b_j>, r_i = <b_i, delta>
(least squares); the remainder delta - c_1 b_1 - c_2 b_2 is orthogonal to both, and the
fraction of the step outside the plane is ||remainder|| / ||delta||.

Gram-matrix PCA. The S saved steps give deltas m_t = theta_t - theta_T (rows of M, S x P).
With K = M M^T (S x S) and, when centring, H = I - 11^T / S, the eigenpairs K_c v_i =
lambda_i v_i of K_c = H K H give the principal directions u_i = (H M)^T v_i / sqrt(lambda_i)
(unit vectors; the right singular vectors of H M), the explained variance lambda_i and its
ratio lambda_i / sum(lambda). Each step's coordinates are its projection onto the u_i,
M u_i = K H v_i / sqrt(lambda_i) (without centring H = I: sqrt(lambda_i) v_i).

Roughness of a 2-D grid of losses L[i, j]: the mean absolute five-point discrete Laplacian
over the interior points, L[i+1,j] + L[i-1,j] + L[i,j+1] + L[i,j-1] - 4 L[i,j], divided by
the loss range max L - min L (grid units, so the number does not depend on the loss's
scale or on the coefficients' units: a quadratic bowl x^2 + y^2 on an n x n grid over
[-1, 1]^2 scores 2 h^2 with h = 2 / (n - 1)); and the count of strict local minima, points
lower than each of their (up to eight) neighbours on the grid. Since the Laplacian also counts
smooth curvature, ``quadratic_residual`` gives a second view: the RMS misfit of the best full
quadratic, relative to the range (0 for any quadratic bowl or saddle).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from llmscape.directions import Direction
from llmscape.errors import LlmscapeError


def dot(u: Direction, v: Direction) -> float:
    """<u, v> over all tensors, in float64."""
    return float(sum(torch.dot(u[n].double().reshape(-1), v[n].double().reshape(-1)) for n in u))


def norm(u: Direction) -> float:
    return dot(u, u) ** 0.5


def combine(coeffs, vectors: list[Direction]) -> Direction:
    """sum_i coeffs[i] vectors[i], in float64."""
    names = list(vectors[0])
    return {n: sum(float(c) * v[n].double() for c, v in zip(coeffs, vectors, strict=True)) for n in names}


def difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> Direction:
    """a - b tensor by tensor (float64); both must hold the same names."""
    if set(a) != set(b):
        raise LlmscapeError(f"cannot subtract parameter sets with different names: {sorted(set(a) ^ set(b))[:4]}")
    return {n: a[n].double() - b[n].double() for n in a}


@dataclass
class Projection:
    coords: np.ndarray  # [2] coefficients of the basis vectors
    in_plane: Direction  # c_1 b_1 + c_2 b_2
    outside: Direction  # delta - in_plane, orthogonal to the basis
    step_norm: float  # ||delta||
    outside_norm: float

    @property
    def outside_fraction(self) -> float:
        """||outside|| / ||delta|| (NaN for a zero step)."""
        return self.outside_norm / self.step_norm if self.step_norm > 0 else float("nan")

    @property
    def in_plane_fraction(self) -> float:
        """||in_plane|| / ||delta||: the rest of the step, sqrt(1 - outside_fraction^2) (NaN for a zero step)."""
        return norm(self.in_plane) / self.step_norm if self.step_norm > 0 else float("nan")


def plane_projection(delta: Direction, basis: list[Direction]) -> Projection:
    """The least-squares split of ``delta`` into the span of ``basis`` and a remainder orthogonal to it."""
    gram = np.array([[dot(a, b) for b in basis] for a in basis])
    rhs = np.array([dot(b, delta) for b in basis])
    try:
        coords = np.linalg.solve(gram, rhs)
    except np.linalg.LinAlgError:
        raise LlmscapeError("the plane's directions are linearly dependent: no unique projection") from None
    in_plane = combine(coords, basis)
    outside = {n: delta[n].double() - in_plane[n] for n in delta}
    return Projection(coords, in_plane, outside, norm(delta), norm(outside))


@dataclass
class TrajectoryPCA:
    components: list[Direction]  # unit principal directions u_i (float64)
    coords: np.ndarray  # [S, n_components]: each delta's projection onto the u_i
    explained_variance: np.ndarray  # every eigenvalue lambda_i of the (centred) Gram matrix, descending
    centred: bool

    @property
    def explained_variance_ratio(self) -> np.ndarray:
        total = self.explained_variance.sum()
        return self.explained_variance / total if total > 0 else np.full_like(self.explained_variance, np.nan)


def gram_matrix(deltas: list[Direction]) -> np.ndarray:
    """K_st = <m_s, m_t> (float64), filled tensor by tensor."""
    s = len(deltas)
    k = np.zeros((s, s))
    for name in deltas[0]:
        rows = torch.stack([d[name].double().reshape(-1) for d in deltas])
        k += (rows @ rows.T).numpy()
    return k


def gram_pca(deltas: list[Direction], n_components: int = 2, centre: bool = False) -> TrajectoryPCA:
    """PCA of the rows m_t through their S x S Gram matrix (see the module docstring)."""
    s = len(deltas)
    k = gram_matrix(deltas)
    h = np.eye(s) - (np.full((s, s), 1.0 / s) if centre else 0.0)
    values, vectors = np.linalg.eigh(h @ k @ h)
    order = np.argsort(values)[::-1]
    values, vectors = np.clip(values[order], 0.0, None), vectors[:, order]
    tol = max(values[0], 0.0) * s * np.finfo(float).eps * 16
    rank = int((values > tol).sum())
    if rank < n_components:
        raise LlmscapeError(
            f"trajectory PCA: the {s} saved steps span {rank} dimension(s), {n_components} are needed "
            "(save more steps, or the run barely moved)"
        )
    sigma = np.sqrt(values[:n_components])
    weights = (h @ vectors[:, :n_components]) / sigma  # u_i = M^T (H v_i) / sigma_i
    components = [combine(weights[:, i], deltas) for i in range(n_components)]
    coords = k @ weights  # M u_i = K H v_i / sigma_i
    return TrajectoryPCA(components, coords, values, centre)


def laplacian(loss: np.ndarray) -> np.ndarray:
    """The five-point discrete Laplacian at the interior points of a 2-D grid (grid units)."""
    z = np.asarray(loss, dtype=float)
    return z[2:, 1:-1] + z[:-2, 1:-1] + z[1:-1, 2:] + z[1:-1, :-2] - 4 * z[1:-1, 1:-1]


def roughness(loss: np.ndarray) -> float:
    """Mean |discrete Laplacian| over the interior, relative to the loss range (0 for a flat or linear surface).

    NaN when the grid is smaller than 3 x 3 or holds a non-finite loss."""
    z = np.asarray(loss, dtype=float)
    if z.ndim != 2 or min(z.shape) < 3 or not np.isfinite(z).all():
        return float("nan")
    span = z.max() - z.min()
    return float(np.abs(laplacian(z)).mean() / span) if span > 0 else 0.0


def quadratic_residual(loss: np.ndarray) -> float:
    """RMS misfit of the best full quadratic c0 + c1 i + c2 j + c3 i^2 + c4 i j + c5 j^2 (least squares, grid
    units), relative to the loss range: 0 for any quadratic surface, so a smooth bowl scores 0 however curved.

    NaN when the grid is smaller than 3 x 3 or holds a non-finite loss."""
    z = np.asarray(loss, dtype=float)
    if z.ndim != 2 or min(z.shape) < 3 or not np.isfinite(z).all():
        return float("nan")
    span = z.max() - z.min()
    if span == 0:
        return 0.0
    i, j = np.meshgrid(np.linspace(-1, 1, z.shape[0]), np.linspace(-1, 1, z.shape[1]), indexing="ij")
    basis = np.stack([np.ones_like(i), i, j, i * i, i * j, j * j], axis=-1).reshape(-1, 6)
    coef, *_ = np.linalg.lstsq(basis, z.ravel(), rcond=None)
    return float(np.sqrt(np.mean((basis @ coef - z.ravel()) ** 2)) / span)


def local_minima(loss: np.ndarray) -> int:
    """Grid points strictly lower than every neighbour (8-neighbourhood; edges have fewer); NaN counts as +inf."""
    z = np.where(np.isfinite(loss), np.asarray(loss, dtype=float), np.inf)
    padded = np.pad(z, 1, constant_values=np.inf)
    is_min = np.isfinite(z)
    n, m = z.shape
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            if di or dj:
                is_min &= z < padded[1 + di : 1 + di + n, 1 + dj : 1 + dj + m]
    return int(is_min.sum())
