"""Training-dynamics geometry: plane projections, Gram-matrix PCA, roughness on known surfaces."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llmscape.dynamics import geometry as G
from llmscape.errors import LlmscapeError


def vec(seed: int, shapes=(("a", (3, 4)), ("b", (5,)))) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {n: torch.randn(*s, generator=g, dtype=torch.float64) for n, s in shapes}


def flat(v) -> torch.Tensor:
    return torch.cat([v[n].double().reshape(-1) for n in sorted(v)])


def test_projection_coordinates_reconstruct_the_in_plane_part_exactly():
    d, e, noise = vec(1), vec(2), vec(3)
    basis = torch.stack([flat(d), flat(e)], dim=1)
    # the part of the noise orthogonal to the plane, so the in-plane part is known exactly
    q, _ = torch.linalg.qr(basis)
    n = flat(noise) - q @ (q.T @ flat(noise))
    delta_flat = 0.3 * flat(d) - 0.7 * flat(e) + n
    names = sorted(d)
    sizes = [d[k].numel() for k in names]
    delta = {k: t.reshape(d[k].shape) for k, t in zip(names, torch.split(delta_flat, sizes), strict=True)}

    p = G.plane_projection(delta, [d, e])
    np.testing.assert_allclose(p.coords, [0.3, -0.7], rtol=0, atol=1e-12)
    torch.testing.assert_close(flat(p.in_plane), 0.3 * flat(d) - 0.7 * flat(e), rtol=0, atol=1e-12)
    torch.testing.assert_close(flat(p.outside), n, rtol=0, atol=1e-12)
    assert abs(G.dot(p.outside, d)) < 1e-12 and abs(G.dot(p.outside, e)) < 1e-12
    assert p.outside_fraction == pytest.approx(n.norm().item() / delta_flat.norm().item(), rel=1e-12)
    assert p.outside_fraction**2 + p.in_plane_fraction**2 == pytest.approx(1.0, rel=1e-12)


def test_a_step_inside_the_plane_has_nothing_outside_and_a_zero_step_no_fraction():
    d, e = vec(1), vec(2)
    p = G.plane_projection(G.combine([2.0, 0.5], [d, e]), [d, e])
    np.testing.assert_allclose(p.coords, [2.0, 0.5], atol=1e-12)
    assert p.outside_fraction < 1e-12
    zero = G.plane_projection({k: torch.zeros_like(t) for k, t in d.items()}, [d, e])
    assert np.isnan(zero.outside_fraction) and np.allclose(zero.coords, 0)
    with pytest.raises(LlmscapeError, match="linearly dependent"):
        G.plane_projection(d, [d, G.combine([2.0], [d])])


@pytest.mark.parametrize("centre", [False, True])
def test_gram_matrix_pca_equals_an_svd_of_the_stacked_deltas(centre):
    deltas = [vec(s) for s in range(5)]
    deltas[-1] = {k: torch.zeros_like(t) for k, t in deltas[-1].items()}  # theta_T - theta_T
    m = torch.stack([flat(v) for v in deltas])
    mc = m - m.mean(dim=0) if centre else m
    _, s, vt = torch.linalg.svd(mc, full_matrices=False)

    pca = G.gram_pca(deltas, 2, centre=centre)
    np.testing.assert_allclose(pca.explained_variance[: len(s)], (s**2).numpy(), rtol=1e-10, atol=1e-10)
    for i in range(2):
        u = flat(pca.components[i])
        assert u.norm().item() == pytest.approx(1.0, rel=1e-12)
        assert abs(torch.dot(u, vt[i]).item()) == pytest.approx(1.0, rel=1e-10)  # the same axis, up to sign
        np.testing.assert_allclose(pca.coords[:, i], (m @ u).numpy(), rtol=1e-10, atol=1e-10)  # projections
    ratio = pca.explained_variance_ratio
    assert ratio.sum() == pytest.approx(1.0) and ratio[0] >= ratio[1]


def test_pca_of_a_path_on_a_line_is_refused_with_a_reason():
    d = vec(1)
    deltas = [G.combine([c], [d]) for c in (2.0, 1.0, 0.0)]
    with pytest.raises(LlmscapeError, match="span 1 dimension"):
        G.gram_pca(deltas, 2)


def grid(n: int = 11):
    x = np.linspace(-1, 1, n)
    return np.meshgrid(x, x, indexing="ij")


def test_roughness_of_a_quadratic_bowl_is_two_h_squared_with_one_minimum():
    for n in (5, 11, 21):
        a, b = grid(n)
        bowl = a**2 + b**2
        h = 2 / (n - 1)
        assert G.roughness(bowl) == pytest.approx(2 * h**2, rel=1e-12)  # |lap| = 4 h^2, range = 2
        assert G.local_minima(bowl) == 1
        assert G.quadratic_residual(bowl) == pytest.approx(0.0, abs=1e-12)
    a, b = grid()
    assert G.roughness(3 * a - 2 * b + 1) == pytest.approx(0.0, abs=1e-12)  # a plane: no curvature
    assert G.roughness(np.full((5, 5), 2.0)) == 0.0 and G.local_minima(np.full((5, 5), 2.0)) == 0


def test_a_rippled_surface_is_rougher_and_its_minima_are_counted():
    a, b = grid(21)
    # minima where cos(2 pi a) cos(2 pi b) = 1: a, b both in {-1, 0, 1} (9) or both in {-1/2, 1/2} (4)
    ripples = -np.cos(2 * np.pi * a) * np.cos(2 * np.pi * b)
    bowl = a**2 + b**2
    assert G.local_minima(ripples) == 13
    assert G.roughness(ripples) > 5 * G.roughness(bowl)
    assert G.quadratic_residual(ripples) > 0.1
    noisy = bowl + 0.05 * np.random.default_rng(0).standard_normal(bowl.shape)
    assert G.roughness(noisy) > G.roughness(bowl) and G.local_minima(noisy) > 1


def test_roughness_needs_a_finite_grid_of_at_least_3_by_3():
    assert np.isnan(G.roughness(np.ones((2, 5)))) and np.isnan(G.quadratic_residual(np.ones((2, 5))))
    z = np.ones((4, 4))
    z[1, 1] = np.inf
    assert np.isnan(G.roughness(z))
    z = np.ones((3, 3))
    z[1, 1], z[0, 0] = 0.0, np.nan
    assert G.local_minima(z) == 1  # a NaN neighbour counts as higher
