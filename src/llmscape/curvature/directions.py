"""Hessian eigenvectors as landscape directions.

The axes are the top eigenvectors v_1, v_2, ... of H = d^2 L / d theta^2 over the
targets, by largest |lambda| (PyHessian's choice): the directions along which the loss
bends most strongly, upwards or downwards, to second order

    L(theta* + t v_i) = L(theta*) + t grad L . v_i + t^2 lambda_i / 2 + O(t^3).

Each comes as a flat unit vector over all targets together, split back into one tensor
per target; normalize them like random directions (``llmscape.directions.normalize``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from llmscape.curvature.eigen import eigensolver
from llmscape.curvature.operators import HessianOperator
from llmscape.curvature.target_loss import TargetLoss
from llmscape.data import EvalSet

log = logging.getLogger("llmscape")


@dataclass
class HessianDirections:
    """Top Hessian eigenvectors as landscape directions (unit norm over all targets together).

    Normalize like random ones: ``llmscape.directions.normalize(d, weights, norm)``.
    ``extra()`` and ``recipe()`` are what ``directions.save_directions`` stores beside them.
    """

    directions: list[dict[str, torch.Tensor]]
    eigenvalues: np.ndarray
    residuals: np.ndarray
    converged: np.ndarray
    seed: int
    iterations: int
    n_hvp: int
    method: str
    tol: float
    which: str = "magnitude"

    def extra(self) -> dict[str, np.ndarray]:
        return {
            "eigenvalues": self.eigenvalues,
            "residuals": self.residuals,
            "converged": self.converged.astype(np.int8),
        }

    def recipe(self) -> dict:
        return {
            "method": "hessian",
            "eigensolver": self.method,
            "which": self.which,
            "seed": self.seed,
            "tol": self.tol,
            "iterations": self.iterations,
            "n_hvp": self.n_hvp,
            "eigenvalues": [float(x) for x in self.eigenvalues],
            "residuals": [float(x) for x in self.residuals],
            "converged": [bool(x) for x in self.converged],
        }


def hessian_directions(
    model: torch.nn.Module,
    data: EvalSet,
    targets: list[str],
    n_axes: int = 2,
    method: str = "lanczos",
    seed: int = 0,
    tol: float = 1e-3,
    max_iter: int = 100,
) -> HessianDirections:
    """The top ``n_axes`` Hessian eigenvectors (largest |lambda|) of the landscape loss on ``targets``."""
    op = HessianOperator(TargetLoss(model, data, targets))
    pairs = eigensolver(method, tol=tol, max_iter=max_iter, seed=seed).eigenpairs(op, n_axes)
    if not pairs.all_converged:
        log.warning(
            "Hessian directions: %d of %d eigenpairs not converged to tol %g within %d iterations (residuals %s)",
            int((~pairs.converged).sum()),
            n_axes,
            tol,
            max_iter,
            np.array2string(pairs.residuals, precision=3),
        )
    dirs = [op.to_dict(v, torch.float32) for v in pairs.eigenvectors]
    return HessianDirections(
        dirs,
        pairs.eigenvalues,
        pairs.residuals,
        pairs.converged,
        seed,
        pairs.iterations,
        pairs.n_hvp,
        method,
        tol,
        pairs.which,
    )
