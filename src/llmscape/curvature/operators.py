"""Symmetric linear operators on flat float64 vectors: the Hessian of a ``TargetLoss``, or an explicit matrix.

    x in R^n  ->  H x,      n = total size of the targets.

A flat vector concatenates the targets, each flattened, in ``loss.targets`` order. The
eigensolvers and estimators see only this interface (``n``, ``matvec(x)``, ``n_hvp``),
never a model, so they are plain linear algebra and are tested on explicit matrices.
Vectors are float64 whatever the model's dtype: Krylov recurrences lose orthogonality
quickly in lower precision; the product itself runs in the model's dtype.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import torch

from llmscape.curvature.target_loss import TargetLoss

log = logging.getLogger("llmscape")

# a spectrum of a large target takes hundreds of products: say how it goes, but not on every one
LOG_EVERY_S = 10.0


class HessianOperator:
    """The Hessian of a ``TargetLoss`` as a symmetric operator on flat float64 vectors; ``n_hvp`` counts products."""

    def __init__(self, loss: TargetLoss):
        self.loss = loss
        self.n = loss.n_params
        self.n_hvp = 0
        self._start = self._last_log = time.monotonic()

    def to_dict(self, x: torch.Tensor, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        out, offset = {}, 0
        for name, shape in self.loss.shapes.items():
            size = math.prod(shape)
            out[name] = x[offset : offset + size].reshape(shape).to(dtype)
            offset += size
        return out

    def to_flat(self, d: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([d[n].detach().reshape(-1).to(torch.float64).cpu() for n in self.loss.shapes])

    def matvec(self, x: torch.Tensor) -> torch.Tensor:
        self.n_hvp += 1
        out = self.to_flat(self.loss.hvp(self.to_dict(x, torch.float64)))
        now = time.monotonic()
        if now - self._last_log >= LOG_EVERY_S:
            self._last_log = now
            log.info("%d Hessian-vector products, %.2f s each", self.n_hvp, (now - self._start) / self.n_hvp)
        return out


class MatrixOperator:
    """An explicit symmetric matrix behind the operator interface (``n``, ``matvec``, ``n_hvp``)."""

    def __init__(self, matrix):
        self.matrix = torch.as_tensor(np.asarray(matrix), dtype=torch.float64)
        self.n = self.matrix.shape[0]
        self.n_hvp = 0

    def matvec(self, x: torch.Tensor) -> torch.Tensor:
        self.n_hvp += 1
        return self.matrix @ x
