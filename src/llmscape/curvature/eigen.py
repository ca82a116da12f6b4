"""Extreme eigenpairs of a symmetric operator: Lanczos and power iteration (no model in here).

Lanczos: from a unit q_1, one product per step builds an orthonormal basis
Q_m = [q_1 .. q_m] of the Krylov space

    K_m(H, q_1) = span{q_1, H q_1, ..., H^(m-1) q_1},    H Q_m = Q_m T_m + beta_m q_(m+1) e_m^T,

with T_m tridiagonal (alpha_j = q_j^T H q_j on the diagonal, beta_j off it). An eigenpair
(theta_i, s_i) of T_m gives the Ritz pair (theta_i, Q_m s_i), whose residual is

    ||H Q_m s_i - theta_i Q_m s_i|| = beta_m |s_m,i|,

so convergence is read off T_m without extra products. The extreme Ritz values converge
first, so the ends of the spectrum take far fewer than n products. In floating point the
basis loses orthogonality as Ritz pairs converge; full reorthogonalization (classical
Gram-Schmidt, twice) keeps it, at O(m n) memory.

Power iteration with deflation: pair i iterates v <- B_i v / ||B_i v|| on
B_i = H - sum_(j<i) lambda_j v_j v_j^T, with lambda = v^T B_i v (the Rayleigh quotient);
it finds the largest |lambda| only, and slowly when |lambda_(i+1) / lambda_i| is near 1.
A last Rayleigh-Ritz step within span(v_1 .. v_k) (k more products) removes the error
each vector inherits from the imperfect pairs deflated before it.

Eigenvalues carry their sign. ``which`` selects the wanted end of the spectrum:
``"magnitude"`` (default: largest |lambda|, what power iteration finds and what the
Hessian directions use), ``"largest"`` (algebraic, most positive first) or
``"smallest"`` (algebraic, most negative first; Lanczos only).

Lanczos can also return, from the same Krylov space at no extra product, the Ritz pair
whose Ritz value is nearest a given value t (``eigenpairs(op, k, nearest=t)``; with t = 0 a
near-zero-curvature direction). Interior Ritz pairs are not converged eigenpairs: callers
report its Rayleigh quotient v^T H v and residual (one product), not the Ritz value alone.

Convergence: an eigenpair (lambda, v) is converged when its residual
||H v - lambda v|| <= tol * |lambda|. Results always carry the residuals, recomputed
with one explicit product per pair (the Ritz estimate is exact only in exact arithmetic),
and a converged flag per pair; hitting the iteration cap is reported in the flags, never raised.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from llmscape.errors import LlmscapeError

WHICH = ("magnitude", "largest", "smallest")


@dataclass
class Eigenpairs:
    """Top-k eigenpairs of a symmetric operator, ordered per ``which``.

    eigenvectors: [k, n] float64, unit norm, sign fixed so the largest-|.| entry is > 0.
    residuals: ||H v - lambda v|| per pair; converged: residual <= tol * |lambda|.
    n_hvp: products the solver spent (verification excluded); history: after each
    product, (products so far in this solve, current estimates of the k eigenvalues,
    NaN where none yet).
    """

    eigenvalues: np.ndarray
    eigenvectors: torch.Tensor
    residuals: np.ndarray
    converged: np.ndarray
    n_hvp: int
    iterations: int
    method: str
    which: str
    tol: float
    history: list[tuple[int, np.ndarray]] = field(default_factory=list)
    # Lanczos with ``nearest=t``: the Ritz pair (value, unit vector) whose value is nearest t
    nearest: tuple[float, torch.Tensor] | None = None

    @property
    def all_converged(self) -> bool:
        return bool(np.all(self.converged))


def _check_k(k: int, n: int) -> None:
    if k < 1:
        raise LlmscapeError(f"need at least one eigenpair, asked for {k}")
    if k > n:
        raise LlmscapeError(f"asked for {k} eigenpairs of a Hessian over {n} parameters; at most {n} exist")


def _select(values: np.ndarray, k: int, which: str) -> np.ndarray:
    if which == "magnitude":
        order = np.argsort(-np.abs(values), kind="stable")
    elif which == "largest":
        order = np.argsort(-values, kind="stable")
    elif which == "smallest":
        order = np.argsort(values, kind="stable")
    else:
        raise LlmscapeError(f"which must be one of {WHICH}, got {which!r}")
    return order[:k]


def _fix_sign(v: torch.Tensor) -> torch.Tensor:
    # an eigenvector's sign is arbitrary; fixing it makes runs and solvers comparable
    return v if v[torch.argmax(v.abs())] >= 0 else -v


def _random_unit(n: int, generator: torch.Generator) -> torch.Tensor:
    v = torch.randn(n, generator=generator, dtype=torch.float64)
    return v / v.norm()


def _orthogonalize(w: torch.Tensor, basis: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """w minus its projection on orthonormal ``basis`` rows, twice (classical Gram-Schmidt, twice is enough)."""
    if len(basis) == 0:
        return w
    q = torch.stack(list(basis)) if isinstance(basis, list) else basis
    for _ in range(2):
        w = w - q.T @ (q @ w)
    return w


def tridiagonal(alpha, beta) -> np.ndarray:
    """T_m: ``alpha`` [m] on the diagonal, ``beta`` [m - 1] on both off-diagonals."""
    m = len(alpha)
    t = np.diag(np.asarray(alpha, dtype=np.float64))
    if m > 1:
        off = np.asarray(beta[: m - 1], dtype=np.float64)
        t += np.diag(off, 1) + np.diag(off, -1)
    return t


def true_residuals(op, values: np.ndarray, vectors: torch.Tensor) -> np.ndarray:
    """||H v - lambda v|| for each pair, one product each."""
    return np.array([float((op.matvec(v) - lam * v).norm()) for lam, v in zip(values, vectors, strict=True)])


class Lanczos:
    """Extreme eigenpairs by Lanczos with full reorthogonalization.

    ``max_iter`` caps the Krylov dimension (= products); the run stops as soon as the
    k wanted Ritz pairs have residual estimates |beta_m s_m,i| <= tol * |theta_i|.
    Breakdown (an invariant subspace) restarts from a fresh random vector orthogonal
    to the basis, so low-rank Hessians still yield k pairs.
    """

    def __init__(self, tol: float = 1e-3, max_iter: int = 100, seed: int = 0, which: str = "magnitude"):
        if which not in WHICH:
            raise LlmscapeError(f"which must be one of {WHICH}, got {which!r}")
        self.tol, self.max_iter, self.seed, self.which = tol, max_iter, seed, which

    def run(self, op, steps: int, v0: torch.Tensor | None = None, k: int | None = None, history=None):
        """Lanczos recurrence: (alpha, beta, basis [m, n], beta_m) after at most ``steps`` products.

        beta has m - 1 entries (the tridiagonal's off-diagonal); beta_m is the norm of
        the last residual, which gives the Ritz residual estimates beta_m |s_m,i|.
        With ``k`` given, stops early when the k wanted Ritz pairs converge.
        """
        gen = torch.Generator().manual_seed(self.seed)
        start = op.n_hvp
        v = _random_unit(op.n, gen) if v0 is None else v0.to(torch.float64) / v0.norm()
        basis, alpha, beta = [v], [], []
        steps = min(steps, op.n)
        b = 0.0
        for j in range(steps):
            w = op.matvec(basis[j])
            a = float(w @ basis[j])
            alpha.append(a)
            w = _orthogonalize(w, basis)
            b = float(w.norm())
            if k is not None:
                theta, s = np.linalg.eigh(tridiagonal(alpha, beta))
                idx = _select(theta, min(k, len(theta)), self.which)
                if history is not None:
                    est = np.full(k, np.nan)
                    est[: len(idx)] = theta[idx]
                    history.append((op.n_hvp - start, est))
                if len(idx) == k and np.all(b * np.abs(s[-1, idx]) <= self.tol * np.abs(theta[idx])):
                    break
            if j + 1 == steps:
                break
            scale = max(max(abs(x) for x in alpha), max(beta, default=0.0), 1e-300)
            if b <= 1e-10 * scale:
                # invariant subspace: continue from a fresh direction, uncoupled (beta = 0)
                w = _orthogonalize(_random_unit(op.n, gen), basis)
                beta.append(0.0)
                basis.append(w / w.norm())
                b = 0.0
            else:
                beta.append(b)
                basis.append(w / b)
        return np.array(alpha), np.array(beta[: len(alpha) - 1]), torch.stack(basis[: len(alpha)]), b

    def eigenpairs(self, op, k: int, nearest: float | None = None) -> Eigenpairs:
        """The k wanted pairs; with ``nearest`` also the Ritz pair of the final Krylov space whose
        value is nearest it (``Eigenpairs.nearest``, no extra product; its residual is the caller's to check)."""
        _check_k(k, op.n)
        start = op.n_hvp
        history: list = []
        alpha, beta, basis, b_last = self.run(op, self.max_iter, k=k, history=history)
        theta, s = np.linalg.eigh(tridiagonal(alpha, beta))
        idx = _select(theta, k, self.which)
        values = np.full(k, np.nan)
        values[: len(idx)] = theta[idx]
        vectors = torch.zeros(k, op.n, dtype=torch.float64)
        residuals = np.full(k, np.inf)  # pairs the capped Krylov space cannot hold: NaN value, inf residual
        for row, i in enumerate(idx):
            vectors[row] = _fix_sign(basis.T @ torch.from_numpy(s[:, i].copy()))
            residuals[row] = b_last * abs(s[-1, i])
        n_hvp = op.n_hvp - start
        found = np.isfinite(values)
        if found.any():
            residuals[found] = true_residuals(op, values[found], vectors[torch.from_numpy(found)])
        converged = found & (residuals <= self.tol * np.abs(values))
        near = None
        if nearest is not None:
            i = int(np.argmin(np.abs(theta - nearest)))
            v = _fix_sign(basis.T @ torch.from_numpy(s[:, i].copy()))
            near = (float(theta[i]), v)
        return Eigenpairs(
            values, vectors, residuals, converged, n_hvp, len(alpha), "lanczos", self.which, self.tol, history, near
        )


class PowerIteration:
    """Top-k eigenpairs by largest magnitude, by power iteration with deflation.

    Pair i iterates on H - sum_{j<i} lambda_j v_j v_j^T, its iterate kept orthogonal to
    the pairs found. Each pair gets at most ``max_iter`` products; it is converged when
    ||H v - lambda v|| <= tol * |lambda| with lambda the Rayleigh quotient.
    """

    def __init__(self, tol: float = 1e-3, max_iter: int = 100, seed: int = 0):
        self.tol, self.max_iter, self.seed = tol, max_iter, seed

    def eigenpairs(self, op, k: int) -> Eigenpairs:
        _check_k(k, op.n)
        gen = torch.Generator().manual_seed(self.seed)
        start = op.n_hvp
        values, vectors, history = [], [], []
        iterations = 0
        for _ in range(k):
            v = _orthogonalize(_random_unit(op.n, gen), vectors)
            v = v / v.norm()
            lam = float("nan")
            for _ in range(self.max_iter):
                iterations += 1
                hv = op.matvec(v)
                for lam_j, u in zip(values, vectors, strict=True):
                    hv = hv - lam_j * u * float(u @ v)
                hv = _orthogonalize(hv, vectors)
                lam = float(v @ hv)
                est = np.full(k, np.nan)
                est[: len(values)] = values
                est[len(values)] = lam
                history.append((op.n_hvp - start, est))
                if float((hv - lam * v).norm()) <= self.tol * abs(lam):
                    break
                norm = hv.norm()
                if norm == 0:
                    break
                v = hv / norm
            values.append(lam)
            vectors.append(v)
        n_hvp = op.n_hvp - start
        values_arr, vecs, residuals = rayleigh_ritz(op, torch.stack(vectors))
        converged = residuals <= self.tol * np.abs(values_arr)
        return Eigenpairs(
            values_arr, vecs, residuals, converged, n_hvp, iterations, "power", "magnitude", self.tol, history
        )


def rayleigh_ritz(op, vectors: torch.Tensor) -> tuple[np.ndarray, torch.Tensor, np.ndarray]:
    """Best eigenpairs within span(vectors) [k, n] (orthonormal), by |lambda|, with true residuals.

    Costs k products. After deflation each power-iteration vector still carries the
    error of the pairs found before it; rotating within their span removes that.
    """
    hv = torch.stack([op.matvec(v) for v in vectors])
    small = (vectors @ hv.T).numpy()
    theta, q = np.linalg.eigh((small + small.T) / 2)
    order = _select(theta, len(theta), "magnitude")
    q = torch.from_numpy(q[:, order].copy())
    vecs, hvs = q.T @ vectors, q.T @ hv
    values = theta[order]
    residuals = np.array([float((hvs[i] - values[i] * vecs[i]).norm()) for i in range(len(values))])
    return values, torch.stack([_fix_sign(v) for v in vecs]), residuals


def eigensolver(method: str, tol: float = 1e-3, max_iter: int = 100, seed: int = 0, which: str = "magnitude"):
    """``Lanczos`` or ``PowerIteration`` by name ("lanczos" / "power")."""
    if method == "lanczos":
        return Lanczos(tol=tol, max_iter=max_iter, seed=seed, which=which)
    if method == "power":
        if which != "magnitude":
            raise LlmscapeError("power iteration finds the largest-magnitude eigenvalues only; use method 'lanczos'")
        return PowerIteration(tol=tol, max_iter=max_iter, seed=seed)
    raise LlmscapeError(f"eigensolver method must be 'lanczos' or 'power', got {method!r}")


def hvps_to_reach(history: list[tuple[int, np.ndarray]], reference: np.ndarray, rel_tol: float = 1e-3) -> int | None:
    """The first product count after which every estimate stays within ``rel_tol`` of ``reference``."""
    reference = np.asarray(reference, dtype=np.float64)
    hit = None
    for n, est in history:
        ok = np.all(np.abs(est[: len(reference)] - reference) <= rel_tol * np.abs(reference))
        if ok and hit is None:
            hit = n
        elif not ok:
            hit = None
    return hit
