"""Curvature of the landscape loss: Hessian-vector products, eigenpairs, trace, density, weight spectra.

Everything here is about the Hessian of *the* landscape loss of ``llmscape.loss``
(per sequence the mean next-token NLL over its predicted tokens, then the mean over
sequences of an ``EvalSet``), taken with respect to the **target tensors only**: a
list of parameter names; every other weight is frozen at its current value theta*.

Building blocks (PyHessian-style, one class per concept):

- ``TargetLoss``: the loss as a twice-differentiable function of the target tensors,
  with ``value()``, ``gradient()`` and ``hvp(v)`` (Pearlmutter's trick: the gradient
  with ``create_graph=True``, then the gradient of <grad, v>; i.e. a double backward,
  through eager attention). Two memory/time savings:

  * chunked vocabulary head: the loss is computed from the final hidden states as
    ``logsumexp(h W^T) - (h W^T)[label]`` over vocabulary chunks by a custom autograd
    function whose backward is itself a chunked custom function, so neither the first
    nor the second backward ever holds the full ``[tokens, vocab]`` logits (only
    predicted positions enter the head; padding never does);
  * prefix reuse: when every target lives in decoder layers >= k, the hidden states
    entering layer k (plus rotary embeddings and the causal mask, built exactly as
    ``LlamaModel.forward`` builds them) are computed once without grad and cached;
    each HVP runs layers k.. only. Checked once against the full forward; on any
    mismatch (an architecture that scales embeddings, say) it falls back with a warning.

- ``HessianOperator``: the HVP on flat float64 vectors (concatenated targets in the
  given order), counting products; ``MatrixOperator`` is the same interface over an
  explicit symmetric matrix (tests, small problems).
- ``Lanczos``: top-k eigenpairs, Lanczos with full reorthogonalization (twice).
- ``PowerIteration``: top-k eigenpairs by power iteration with deflation.
- ``HutchinsonTrace``: tr(H) from Rademacher probes, with its standard error.
- ``SpectralDensity``: stochastic Lanczos quadrature; a Gaussian-broadened density on a
  grid, with the quadrature nodes and weights.

Eigenvalues carry their sign. ``which`` selects the wanted end of the spectrum:
``"magnitude"`` (default: largest |lambda|, what power iteration finds and what the
Hessian directions use), ``"largest"`` (algebraic, most positive first) or
``"smallest"`` (algebraic, most negative first; Lanczos only). ``compute_spectrum``
reports lambda_max and lambda_min (the algebraic ends; a negative lambda_min is negative
curvature) beside the top-k and the ratio lambda_max / |lambda_min|. An end already in
the top-k by magnitude is taken from there (if a positive eigenvalue is among them, the
largest one is lambda_max; likewise for negative ones and lambda_min); otherwise one more
Lanczos run finds it.

Convergence: an eigenpair (lambda, v) is converged when its residual
||H v - lambda v|| <= tol * |lambda|. Results always carry the residuals (recomputed
with one explicit HVP per pair unless ``verify=False``) and a converged flag per pair;
hitting the iteration cap is reported in the flags, never raised.

Spectrum file layout (``save_spectrum``; plain h5py; each dataset is present only when
that part was computed, the attributes always are):

    /eigenvalues            [k] float64   top-k Hessian eigenvalues (order per attr ``which``)
    /residuals              [k] float64   ||H v - lambda v|| per eigenpair
    /converged              [k] bool
    /lambda_max             []  float64   largest algebraic eigenvalue
    /lambda_max_residual    []  float64
    /lambda_min             []  float64   smallest algebraic eigenvalue (negative = negative curvature)
    /lambda_min_residual    []  float64
    /trace                  []  float64   Hutchinson estimate of tr(H)
    /trace_se               []  float64   its standard error
    /trace_samples          [m] float64   the probe values z^T H z
    /density/grid           [G] float64   SLQ spectral density, Gaussian-broadened
    /density/values         [G] float64   (integrates to 1 over the grid)
    /density/nodes          [P, S] float64  Ritz values per probe (NaN-padded)
    /density/weights        [P, S] float64  quadrature weights per probe (0-padded)
    /weight_singular_values/<parameter name>  [r] float64  descending singular values;
                                              attr ``condition_number`` = s_max / s_min
    attrs: format = "llmscape-spectrum", version = 1, targets (JSON list), n_params,
           which, method, seed, n_hvp, lambda_ratio, provenance (JSON from the caller),
           density_sigma (when a density is stored)
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from llmscape import llama
from llmscape.data import EvalSet
from llmscape.errors import LlmscapeError
from llmscape.loss import shifted_targets
from llmscape.targets import layer_index

log = logging.getLogger("llmscape")

WHICH = ("magnitude", "largest", "smallest")
WEIGHT_MATRICES = (
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
)
SPECTRUM_FORMAT = "llmscape-spectrum"
SPECTRUM_VERSION = 1


# --------------------------------------------------------------------------------------
# Chunked vocabulary head, twice differentiable
# --------------------------------------------------------------------------------------


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


class _LogSumExpGrad(torch.autograd.Function):
    """Backward of ``_ChunkedLogSumExp`` as a function of (h, W, g), itself differentiable.

    With Z = h W^T, P = softmax(Z), A = g P: grad_h = A W, grad_W = A^T h. Its backward
    (the second derivative) is computed chunk by chunk as well; see ``backward``.
    """

    @staticmethod
    def forward(ctx, h, weight, lse, g, chunk, need_h, need_w):
        grad_h = torch.zeros_like(h) if need_h else None
        grad_w = torch.empty_like(weight) if need_w else None
        for c in _chunks(weight.shape[0], chunk):
            a = g[:, None] * torch.exp(h @ weight[c].T - lse[:, None])
            if need_h:
                grad_h += a @ weight[c]
            if need_w:
                grad_w[c] = a.T @ h
        ctx.save_for_backward(h, weight, lse, g)
        ctx.chunk, ctx.need_h, ctx.need_w = chunk, need_h, need_w
        return tuple(t for t in (grad_h, grad_w) if t is not None)

    @staticmethod
    def backward(ctx, *cotangents):
        # Phi = <u_h, A W> + <u_W, A^T h> = sum_mv A_mv S_mv with S = u_h W^T + h u_W^T.
        # Through A = g softmax(Z): dPhi/dZ = G = g P (S - rowsum(P S)), then
        # dh = G W + A u_W, dW = G^T h + A^T u_h, dg = rowsum(P S).
        h, weight, lse, g = ctx.saved_tensors
        cot = list(cotangents)
        u_h = cot.pop(0) if ctx.need_h else None
        u_w = cot.pop(0) if ctx.need_w else None
        chunk = ctx.chunk

        def s_and_p(c):
            p = torch.exp(h @ weight[c].T - lse[:, None])
            s = torch.zeros_like(p)
            if u_h is not None:
                s = s + u_h @ weight[c].T
            if u_w is not None:
                s = s + h @ u_w[c].T
            return p, s

        r = torch.zeros_like(lse)
        for c in _chunks(weight.shape[0], chunk):
            p, s = s_and_p(c)
            r += (p * s).sum(dim=1)
        want_h, want_w, _, want_g = ctx.needs_input_grad[:4]
        d_h = torch.zeros_like(h) if want_h else None
        d_w = torch.zeros_like(weight) if want_w else None
        for c in _chunks(weight.shape[0], chunk):
            p, s = s_and_p(c)
            a = g[:, None] * p
            gz = a * (s - r[:, None])
            if want_h:
                d_h += gz @ weight[c]
                if u_w is not None:
                    d_h += a @ u_w[c]
            if want_w:
                d_w[c] = gz.T @ h
                if u_h is not None:
                    d_w[c] += a.T @ u_h
        return d_h, d_w, None, (r if want_g else None), None, None, None


class _ChunkedLogSumExp(torch.autograd.Function):
    """Row-wise logsumexp(h W^T) over vocabulary chunks; saves only h, W and the result."""

    @staticmethod
    def forward(ctx, h, weight, chunk):
        lse = None
        for c in _chunks(weight.shape[0], chunk):
            part = torch.logsumexp(h @ weight[c].T, dim=1)
            lse = part if lse is None else torch.logaddexp(lse, part)
        ctx.save_for_backward(h, weight, lse)
        ctx.chunk = chunk
        return lse

    @staticmethod
    def backward(ctx, g):
        h, weight, lse = ctx.saved_tensors
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if not (need_h or need_w):
            return None, None, None
        out = list(_LogSumExpGrad.apply(h, weight, lse.detach(), g, ctx.chunk, need_h, need_w))
        grad_h = out.pop(0) if need_h else None
        grad_w = out.pop(0) if need_w else None
        return grad_h, grad_w, None


def chunked_token_nll(
    hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, chunk: int = 8192
) -> torch.Tensor:
    """NLL of ``labels`` under logits ``hidden @ weight.T`` ([M, H] x [V, H] -> [M]).

    Never materializes the [M, V] logits, in the forward, backward or double backward.
    Computed in float32 at least (float64 stays float64).
    """
    dtype = torch.promote_types(hidden.dtype, torch.float32)
    h, w = hidden.to(dtype), weight.to(dtype)
    lse = _ChunkedLogSumExp.apply(h, w, int(chunk))
    return lse - (h * w[labels]).sum(dim=-1)


# --------------------------------------------------------------------------------------
# The landscape loss as a function of the target tensors
# --------------------------------------------------------------------------------------


@dataclass
class _Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_weights: torch.Tensor  # [M] weight of each predicted token in L (1 / (N * n_tokens of its sequence))
    labels: torch.Tensor  # [M]
    positions: torch.Tensor  # [B, T-1] bool: predicted positions


class PrefixCache:
    """Hidden states entering decoder layer ``start`` for each batch, computed once without grad.

    Mirrors ``LlamaModel.forward`` (embeddings, then llmscape/llama.py: position ids
    0..T-1 shared by the right-padded rows, ``create_causal_mask``, rotary embeddings,
    layer calls) and stores, per batch, what layers ``start..`` need. Stale if weights
    below ``start`` change.
    """

    def __init__(self, base: torch.nn.Module, start: int):
        self.base, self.start = base, start
        self._cache: dict[int, tuple] = {}

    @torch.no_grad()
    def _prefix(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple:
        base = self.base
        emb = base.embed_tokens(ids)
        position_ids = llama.position_ids(ids.shape[1], ids.device)
        causal = llama.causal_mask(base.config, emb, mask, position_ids)
        pos_emb = base.rotary_emb(emb, position_ids=position_ids)
        h = emb
        for layer in base.layers[: self.start]:
            h = llama.run_layer(layer, h, causal, pos_emb, position_ids)
        return h, causal, pos_emb, position_ids

    def hidden_states(self, key: int, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Final normed hidden states [B, T, H], running only layers ``start..`` with grad."""
        if key not in self._cache:
            self._cache[key] = self._prefix(ids, mask)
        h, causal, pos_emb, position_ids = self._cache[key]
        for layer in self.base.layers[self.start :]:
            h = llama.run_layer(layer, h, causal, pos_emb, position_ids)
        return self.base.norm(h)

    def clear(self) -> None:
        self._cache.clear()


def first_target_layer(targets: list[str]) -> int | None:
    """The lowest decoder layer holding a target, or None when some target is outside the layers."""
    layers = [layer_index(t) for t in targets]
    return None if any(i is None for i in layers) else min(layers)


class TargetLoss:
    """The landscape loss L(theta) as a function of the target tensors, differentiable twice.

    ``model`` is a causal LM (loaded eager: CPU SDPA has no double backward); its
    weights are read live, never copied. ``head="chunked"`` computes the vocabulary
    projection in chunks of ``vocab_chunk`` rows; ``head="logits"`` materializes the
    logits (the plain path, kept as a cross-check). ``prefix_reuse`` runs only the
    layers from the first targeted one (see ``PrefixCache``).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        data: EvalSet,
        targets: list[str],
        batch_size: int = 8,
        prefix_reuse: bool = True,
        head: str = "chunked",
        vocab_chunk: int = 8192,
    ):
        if not targets:
            raise LlmscapeError("curvature needs at least one target tensor")
        if head not in ("chunked", "logits"):
            raise LlmscapeError(f"head must be 'chunked' or 'logits', got {head!r}")
        params = dict(model.named_parameters(remove_duplicate=False))
        missing = [t for t in targets if t not in params]
        if missing:
            raise LlmscapeError(f"target tensors not in the model: {missing[:5]}; names look like {list(params)[:4]}")
        self.model, self.data, self.targets = model, data, list(targets)
        self.params = {t: params[t] for t in self.targets}
        self.shapes = {t: tuple(p.shape) for t, p in self.params.items()}
        self.n_params = sum(p.numel() for p in self.params.values())
        self.head, self.vocab_chunk = head, vocab_chunk
        self.device = next(model.parameters()).device
        self.base = getattr(model, "model", None)
        out = model.get_output_embeddings()
        if not isinstance(out, torch.nn.Linear) or out.bias is not None:
            raise LlmscapeError("curvature needs a bias-free linear output head (lm_head)")
        for attr in ("final_logit_softcapping", "logit_scale"):
            if getattr(model.config, attr, None):
                raise LlmscapeError(f"models with {attr} are not supported by the curvature loss")
        self.batches = self._make_batches(batch_size)
        self.prefix: PrefixCache | None = None
        start = first_target_layer(self.targets)
        if prefix_reuse and start and self._has_llama_layout():
            self.prefix = PrefixCache(self.base, start)
            self._check_prefix()

    # -- data ---------------------------------------------------------------------------

    def _make_batches(self, batch_size: int) -> list[_Batch]:
        n_seq = len(self.data)
        batches = []
        for start in range(0, n_seq, batch_size):
            ids = self.data.input_ids[start : start + batch_size].to(self.device)
            mask = self.data.attention_mask[start : start + batch_size].to(self.device)
            labels, positions = shifted_targets(ids, mask)
            n_tok = positions.sum(dim=1, keepdim=True).to(torch.float64)
            weights = (1.0 / (n_seq * n_tok)).expand_as(positions)[positions]
            batches.append(_Batch(ids, mask, weights, labels[positions], positions))
        return batches

    @property
    def head_weight(self) -> torch.Tensor:
        return self.model.get_output_embeddings().weight

    def _has_llama_layout(self) -> bool:
        return self.base is not None and all(
            hasattr(self.base, a) for a in ("embed_tokens", "layers", "rotary_emb", "norm")
        )

    # -- the loss -----------------------------------------------------------------------

    def _hidden_states(self, i: int, b: _Batch) -> torch.Tensor:
        if self.prefix is not None:
            return self.prefix.hidden_states(i, b.input_ids, b.attention_mask)
        return self.base(input_ids=b.input_ids, attention_mask=b.attention_mask).last_hidden_state

    def _batch_loss(self, i: int, b: _Batch) -> torch.Tensor:
        """This batch's share of L (its sequences' mean token NLL, divided by N)."""
        h = self._hidden_states(i, b)[:, :-1][b.positions]
        if self.head == "chunked":
            nll = chunked_token_nll(h, self.head_weight, b.labels, self.vocab_chunk)
        else:
            logits = (h @ self.head_weight.T).to(torch.promote_types(h.dtype, torch.float32))
            nll = F.cross_entropy(logits, b.labels, reduction="none")
        return (nll * b.token_weights.to(nll.dtype)).sum()

    @contextmanager
    def _targets_require_grad(self):
        before = {n: p.requires_grad for n, p in self.params.items()}
        try:
            for p in self.params.values():
                p.requires_grad_(True)
            yield
        finally:
            for n, p in self.params.items():
                p.requires_grad_(before[n])

    @torch.no_grad()
    def value(self) -> float:
        return float(sum(self._batch_loss(i, b).item() for i, b in enumerate(self.batches)))

    def gradient(self) -> dict[str, torch.Tensor]:
        out = {n: torch.zeros_like(p) for n, p in self.params.items()}
        with self._targets_require_grad(), torch.enable_grad():
            for i, b in enumerate(self.batches):
                grads = torch.autograd.grad(self._batch_loss(i, b), list(self.params.values()))
                for n, g in zip(self.params, grads, strict=True):
                    out[n] += g
        return out

    def hvp(self, v: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """H v for a direction ``v`` {target name: tensor}, by double backward, batch by batch."""
        params = list(self.params.values())
        vs = [v[n].to(p.device, p.dtype) for n, p in self.params.items()]
        out = {n: torch.zeros_like(p) for n, p in self.params.items()}
        with self._targets_require_grad(), torch.enable_grad():
            for i, b in enumerate(self.batches):
                grads = torch.autograd.grad(self._batch_loss(i, b), params, create_graph=True)
                dot = sum((g * u).sum() for g, u in zip(grads, vs, strict=True))
                hv = torch.autograd.grad(dot, params, allow_unused=True)
                for n, t in zip(self.params, hv, strict=True):
                    if t is not None:
                        out[n] += t
        return out

    def _check_prefix(self) -> None:
        with torch.no_grad():
            reused = self.value()
            prefix, self.prefix = self.prefix, None
            full = self.value()
        if math.isclose(reused, full, rel_tol=1e-4, abs_tol=1e-6):
            self.prefix = prefix
        else:
            log.warning(
                "prefix reuse disabled: the reused-prefix loss %.6g differs from the full forward's %.6g "
                "(this architecture's layer stack is not LlamaModel's)", reused, full,
            )

    def weights(self) -> dict[str, torch.Tensor]:
        """The current target tensors (theta*), detached copies in float32."""
        return {n: p.detach().float().clone() for n, p in self.params.items()}


# --------------------------------------------------------------------------------------
# Linear operators on flat float64 vectors
# --------------------------------------------------------------------------------------


class HessianOperator:
    """The Hessian of a ``TargetLoss`` as a symmetric operator on flat float64 vectors.

    A flat vector concatenates the targets, each flattened, in ``loss.targets`` order.
    ``n_hvp`` counts products; progress is logged at most every ``log_every_s`` seconds,
    since a spectrum of a large target takes hundreds of products.
    """

    def __init__(self, loss: TargetLoss, log_every_s: float = 10.0):
        self.loss = loss
        self.n = loss.n_params
        self.n_hvp = 0
        self.log_every_s = log_every_s
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
        if now - self._last_log >= self.log_every_s:
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


# --------------------------------------------------------------------------------------
# Eigenpairs
# --------------------------------------------------------------------------------------


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

    def __init__(
        self, tol: float = 1e-3, max_iter: int = 100, seed: int = 0, which: str = "magnitude", verify: bool = True
    ):
        if which not in WHICH:
            raise LlmscapeError(f"which must be one of {WHICH}, got {which!r}")
        self.tol, self.max_iter, self.seed, self.which, self.verify = tol, max_iter, seed, which, verify

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
                theta, s = np.linalg.eigh(_tridiagonal(alpha, beta))
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

    def eigenpairs(self, op, k: int) -> Eigenpairs:
        _check_k(k, op.n)
        start = op.n_hvp
        history: list = []
        alpha, beta, basis, b_last = self.run(op, self.max_iter, k=k, history=history)
        theta, s = np.linalg.eigh(_tridiagonal(alpha, beta))
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
        if self.verify and found.any():
            residuals[found] = true_residuals(op, values[found], vectors[torch.from_numpy(found)])
        converged = found & (residuals <= self.tol * np.abs(values))
        return Eigenpairs(
            values, vectors, residuals, converged, n_hvp, len(alpha), "lanczos", self.which, self.tol, history
        )


def _tridiagonal(alpha, beta) -> np.ndarray:
    m = len(alpha)
    t = np.diag(np.asarray(alpha, dtype=np.float64))
    if m > 1:
        off = np.asarray(beta[: m - 1], dtype=np.float64)
        t += np.diag(off, 1) + np.diag(off, -1)
    return t


class PowerIteration:
    """Top-k eigenpairs by largest magnitude, by power iteration with deflation.

    Pair i iterates on H - sum_{j<i} lambda_j v_j v_j^T, its iterate kept orthogonal to
    the pairs found. Each pair gets at most ``max_iter`` products; it is converged when
    ||H v - lambda v|| <= tol * |lambda| with lambda the Rayleigh quotient.
    """

    which = "magnitude"

    def __init__(self, tol: float = 1e-3, max_iter: int = 100, seed: int = 0, verify: bool = True):
        self.tol, self.max_iter, self.seed, self.verify = tol, max_iter, seed, verify

    def eigenpairs(self, op, k: int) -> Eigenpairs:
        _check_k(k, op.n)
        gen = torch.Generator().manual_seed(self.seed)
        start = op.n_hvp
        values, vectors, estimates, history = [], [], [], []
        iterations = 0
        for _ in range(k):
            v = _orthogonalize(_random_unit(op.n, gen), vectors)
            v = v / v.norm()
            lam, residual = float("nan"), float("inf")
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
                residual = float((hv - lam * v).norm())
                if residual <= self.tol * abs(lam):
                    break
                norm = hv.norm()
                if norm == 0:
                    break
                v = hv / norm
            values.append(lam)
            vectors.append(v)
            estimates.append(residual)
        n_hvp = op.n_hvp - start
        if self.verify:
            values_arr, vecs, residuals = rayleigh_ritz(op, torch.stack(vectors))
        else:
            vecs = torch.stack([_fix_sign(v) for v in vectors])
            values_arr, residuals = np.array(values), np.array(estimates)
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


# --------------------------------------------------------------------------------------
# Hessian directions
# --------------------------------------------------------------------------------------


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
    batch_size: int = 8,
    which: str = "magnitude",
) -> HessianDirections:
    """The top ``n_axes`` Hessian eigenvectors of the landscape loss on ``targets``.

    ``which="magnitude"`` (default) takes the largest |lambda| (PyHessian's choice);
    ``"largest"`` the most positive curvature (Lanczos only).
    """
    op = HessianOperator(TargetLoss(model, data, targets, batch_size=batch_size))
    pairs = eigensolver(method, tol=tol, max_iter=max_iter, seed=seed, which=which).eigenpairs(op, n_axes)
    if not pairs.all_converged:
        log.warning(
            "Hessian directions: %d of %d eigenpairs not converged to tol %g within %d iterations (residuals %s)",
            int((~pairs.converged).sum()), n_axes, tol, max_iter, np.array2string(pairs.residuals, precision=3),
        )
    dirs = [op.to_dict(v, torch.float32) for v in pairs.eigenvectors]
    return HessianDirections(
        dirs, pairs.eigenvalues, pairs.residuals, pairs.converged, seed, pairs.iterations, pairs.n_hvp, method, tol,
        which,
    )


# --------------------------------------------------------------------------------------
# Trace and spectral density
# --------------------------------------------------------------------------------------


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


def rademacher(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 2, (n,), generator=generator).to(torch.float64) * 2 - 1


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
    """Stochastic Lanczos quadrature (Ghorbani et al. 2019; Lin et al. 2016).

    ``n_probes`` normalized Rademacher starts, ``n_steps`` Lanczos steps each (full
    reorthogonalization). ``sigma`` is the Gaussian broadening, by default
    ``sigma_rel`` times the spread of all nodes; the grid spans the nodes +- 6 sigma.
    """

    def __init__(self, n_probes: int = 10, n_steps: int = 40, seed: int = 0, n_grid: int = 2000,
                 sigma: float | None = None, sigma_rel: float = 0.01):
        self.n_probes, self.n_steps, self.seed = n_probes, n_steps, seed
        self.n_grid, self.sigma, self.sigma_rel = n_grid, sigma, sigma_rel

    def estimate(self, op) -> DensityEstimate:
        gen = torch.Generator().manual_seed(self.seed)
        steps = min(self.n_steps, op.n)
        nodes = np.full((self.n_probes, steps), np.nan)
        weights = np.zeros((self.n_probes, steps))
        for p in range(self.n_probes):
            v0 = rademacher(op.n, gen)
            alpha, beta, _, _ = Lanczos(seed=self.seed + 1 + p).run(op, steps, v0=v0)
            theta, s = np.linalg.eigh(_tridiagonal(alpha, beta))
            nodes[p, : len(theta)] = theta
            weights[p, : len(theta)] = s[0] ** 2
        finite = nodes[np.isfinite(nodes)]
        lo, hi = float(finite.min()), float(finite.max())
        sigma = self.sigma if self.sigma is not None else self.sigma_rel * max(hi - lo, abs(hi), 1e-12)
        grid = np.linspace(lo - 6 * sigma, hi + 6 * sigma, self.n_grid)
        density = gaussian_broadened_density(grid, nodes, weights, sigma)
        return DensityEstimate(grid, density, nodes, weights, sigma)


def gaussian_broadened_density(grid: np.ndarray, nodes: np.ndarray, weights: np.ndarray, sigma: float) -> np.ndarray:
    """mean over probes of sum_j w_j N(grid; node_j, sigma^2)."""
    ok = np.isfinite(nodes) & (weights > 0)
    x, w = nodes[ok], weights[ok]
    kernel = np.exp(-0.5 * ((grid[:, None] - x[None, :]) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
    return kernel @ w / nodes.shape[0]


def lambda_ratio(lambda_max: float, lambda_min: float) -> float:
    """lambda_max / |lambda_min|: how dominant the top curvature is over the most negative one (inf if 0)."""
    return float(lambda_max / abs(lambda_min)) if lambda_min != 0 else float("inf")


# --------------------------------------------------------------------------------------
# Weight spectra
# --------------------------------------------------------------------------------------

_WEIGHT_NAME = re.compile(r"layers\.(\d+)\.(" + "|".join(re.escape(m) for m in WEIGHT_MATRICES) + r")\.weight$")


def weight_spectra(source: torch.nn.Module | dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Singular values (descending, float64) of every decoder layer's q/k/v/o and gate/up/down matrices."""
    tensors = dict(source.named_parameters()) if isinstance(source, torch.nn.Module) else source
    out = {}
    for name, t in tensors.items():
        if _WEIGHT_NAME.search(name) and t.dim() == 2:
            out[name] = torch.linalg.svdvals(t.detach().to(torch.float64)).numpy()
    if not out:
        raise LlmscapeError("no decoder-layer attention/MLP weight matrices found for weight spectra")
    return out


def condition_number(singular_values: np.ndarray) -> float:
    s = np.asarray(singular_values)
    return float(s[0] / s[-1]) if s[-1] > 0 else float("inf")


def weight_spectra_table(spectra: dict[str, np.ndarray]):
    """One row per matrix: layer, matrix kind, shape rank, sigma_max, sigma_min, condition number."""
    import pandas as pd

    rows = []
    for name, s in spectra.items():
        m = _WEIGHT_NAME.search(name)
        rows.append({
            "tensor": name, "layer": int(m.group(1)) if m else None, "matrix": m.group(2) if m else None,
            "rank": len(s), "sigma_max": float(s[0]), "sigma_min": float(s[-1]),
            "condition_number": condition_number(s),
        })
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------
# One target's full spectrum, stored and tabulated
# --------------------------------------------------------------------------------------


@dataclass
class Spectrum:
    """Curvature summary of one target set; every part optional except targets and n_params."""

    targets: list[str]
    n_params: int
    eigenvalues: np.ndarray | None = None
    residuals: np.ndarray | None = None
    converged: np.ndarray | None = None
    lambda_max: float | None = None
    lambda_max_residual: float | None = None
    lambda_min: float | None = None
    lambda_min_residual: float | None = None
    trace: TraceEstimate | None = None
    density: DensityEstimate | None = None
    weight_singular_values: dict[str, np.ndarray] = field(default_factory=dict)
    which: str = "magnitude"
    method: str = "lanczos"
    seed: int = 0
    n_hvp: int = 0
    seconds: float = 0.0

    @property
    def ratio(self) -> float | None:
        """lambda_max / |lambda_min| (None unless both are known)."""
        if self.lambda_max is None or self.lambda_min is None:
            return None
        return lambda_ratio(self.lambda_max, self.lambda_min)


def compute_spectrum(
    model: torch.nn.Module,
    data: EvalSet,
    targets: list[str],
    k: int = 3,
    method: str = "lanczos",
    tol: float = 1e-3,
    max_iter: int = 100,
    seed: int = 0,
    trace_probes: int = 30,
    density_probes: int = 4,
    density_steps: int = 30,
    extremes: bool = True,
    weights: bool = True,
    batch_size: int = 8,
) -> Spectrum:
    """Top-k eigenpairs (largest |lambda|), lambda_max/lambda_min, Hutchinson trace, SLQ density, weight spectra.

    Parts with a zero count (``trace_probes=0``, ``density_probes=0``, ``k=0``) or a false
    flag are skipped. Weight spectra cover the targeted matrices that are attention/MLP
    weights; for every layer's, set ``spectrum.weight_singular_values = weight_spectra(model)``
    before saving. Use a float32 (or float64) model: second derivatives in bf16 are noise.
    """
    t0 = time.perf_counter()
    op = HessianOperator(TargetLoss(model, data, targets, batch_size=batch_size))
    spec = Spectrum(list(targets), op.n, method=method, seed=seed)
    if k:
        log.info("spectrum of %d parameters: top-%d eigenpairs by %s", op.n, k, method)
        pairs = eigensolver(method, tol=tol, max_iter=max_iter, seed=seed).eigenpairs(op, k)
        spec.eigenvalues, spec.residuals, spec.converged = pairs.eigenvalues, pairs.residuals, pairs.converged
    if extremes:
        for end in ("largest", "smallest"):
            value, residual = _spectrum_end(op, spec, end, tol, max_iter, seed)
            setattr(spec, "lambda_max" if end == "largest" else "lambda_min", value)
            setattr(spec, "lambda_max_residual" if end == "largest" else "lambda_min_residual", residual)
    if trace_probes:
        log.info("Hutchinson trace: %d probes (after %d products)", trace_probes, op.n_hvp)
        spec.trace = HutchinsonTrace(trace_probes, seed).estimate(op)
    if density_probes:
        log.info("spectral density: %d probes x %d Lanczos steps", density_probes, density_steps)
        spec.density = SpectralDensity(density_probes, density_steps, seed).estimate(op)
    if weights:
        tensors = {t: op.loss.params[t] for t in targets if _WEIGHT_NAME.search(t)}
        spec.weight_singular_values = weight_spectra(tensors) if tensors else {}
    spec.n_hvp, spec.seconds = op.n_hvp, time.perf_counter() - t0
    return spec


def _spectrum_end(op, spec: Spectrum, end: str, tol: float, max_iter: int, seed: int) -> tuple[float, float]:
    """lambda_max (``end="largest"``) or lambda_min: from the top-k by magnitude when it must be there."""
    if spec.eigenvalues is not None:
        vals = np.asarray(spec.eigenvalues)
        side = vals > 0 if end == "largest" else vals < 0
        if side.any():
            i = np.flatnonzero(side)[np.argmax(vals[side]) if end == "largest" else np.argmin(vals[side])]
            return float(vals[i]), float(spec.residuals[i])
    pairs = Lanczos(tol=tol, max_iter=max_iter, seed=seed, which=end).eigenpairs(op, 1)
    return float(pairs.eigenvalues[0]), float(pairs.residuals[0])


def save_spectrum(path: str | Path, spectrum: Spectrum, provenance: dict | None = None) -> None:
    """Write a spectrum file (layout in the module docstring)."""
    s = spectrum
    with h5py.File(path, "w") as f:
        if s.eigenvalues is not None:
            f.create_dataset("eigenvalues", data=np.asarray(s.eigenvalues, dtype=np.float64))
            f.create_dataset("residuals", data=np.asarray(s.residuals, dtype=np.float64))
            f.create_dataset("converged", data=np.asarray(s.converged, dtype=bool))
        for end in ("lambda_max", "lambda_min"):
            if getattr(s, end) is not None:
                f.create_dataset(end, data=np.float64(getattr(s, end)))
                f.create_dataset(f"{end}_residual", data=np.float64(getattr(s, f"{end}_residual")))
        if s.trace is not None:
            f.create_dataset("trace", data=np.float64(s.trace.trace))
            f.create_dataset("trace_se", data=np.float64(s.trace.se))
            f.create_dataset("trace_samples", data=np.asarray(s.trace.samples, dtype=np.float64))
        if s.density is not None:
            g = f.create_group("density")
            g.create_dataset("grid", data=s.density.grid)
            g.create_dataset("values", data=s.density.density)
            g.create_dataset("nodes", data=s.density.nodes)
            g.create_dataset("weights", data=s.density.weights)
            f.attrs["density_sigma"] = s.density.sigma
        if s.weight_singular_values:
            g = f.create_group("weight_singular_values")
            for name, sv in s.weight_singular_values.items():
                ds = g.create_dataset(name, data=np.asarray(sv, dtype=np.float64))
                ds.attrs["condition_number"] = condition_number(sv)
        f.attrs["format"] = SPECTRUM_FORMAT
        f.attrs["version"] = SPECTRUM_VERSION
        f.attrs["targets"] = json.dumps(s.targets)
        f.attrs["n_params"] = int(s.n_params)
        f.attrs["which"] = s.which
        f.attrs["method"] = s.method
        f.attrs["seed"] = int(s.seed)
        f.attrs["n_hvp"] = int(s.n_hvp)
        f.attrs["seconds"] = float(s.seconds)
        ratio = s.ratio
        f.attrs["lambda_ratio"] = np.nan if ratio is None else ratio
        f.attrs["provenance"] = json.dumps(provenance or {}, sort_keys=True, default=str)


def load_spectrum(path: str | Path) -> tuple[Spectrum, dict]:
    """A spectrum file back as (Spectrum, provenance dict)."""
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise LlmscapeError(f"cannot read spectrum file {path}: {exc}") from exc
    with f:
        if f.attrs.get("format") != SPECTRUM_FORMAT:
            raise LlmscapeError(f"{path} is not an llmscape spectrum file")
        s = Spectrum(json.loads(f.attrs["targets"]), int(f.attrs["n_params"]))
        s.which, s.method = str(f.attrs["which"]), str(f.attrs["method"])
        s.seed, s.n_hvp, s.seconds = int(f.attrs["seed"]), int(f.attrs["n_hvp"]), float(f.attrs.get("seconds", 0.0))
        if "eigenvalues" in f:
            s.eigenvalues, s.residuals, s.converged = f["eigenvalues"][...], f["residuals"][...], f["converged"][...]
        for end in ("lambda_max", "lambda_min"):
            if end in f:
                setattr(s, end, float(f[end][()]))
                setattr(s, f"{end}_residual", float(f[f"{end}_residual"][()]))
        if "trace" in f:
            s.trace = TraceEstimate(float(f["trace"][()]), float(f["trace_se"][()]), f["trace_samples"][...])
        if "density" in f:
            g = f["density"]
            s.density = DensityEstimate(
                g["grid"][...], g["values"][...], g["nodes"][...], g["weights"][...], float(f.attrs["density_sigma"])
            )
        if "weight_singular_values" in f:
            g = f["weight_singular_values"]
            s.weight_singular_values = {name: g[name][...] for name in g}
        provenance = json.loads(f.attrs["provenance"])
    return s, provenance


def spectra_table(paths: list[str | Path], k: int | None = None):
    """One row per spectrum file (target set): lambda_1..k, lambda_max, lambda_min, ratio, trace, se, n_params.

    ``k`` fixes the number of eigenvalue columns (default: the most any file holds;
    missing ones are NaN). Columns ``target`` (targets joined by ',') and ``path`` identify rows,
    with ``study``, ``model``, ``landscape``, ``layer`` and ``layer_index`` copied from each
    file's provenance where present.
    """
    import pandas as pd

    loaded = [(Path(p), *load_spectrum(p)) for p in paths]
    if k is None:
        k = max((len(s.eigenvalues) for _, s, _ in loaded if s.eigenvalues is not None), default=0)
    rows = []
    for path, s, prov in loaded:
        row = {"path": str(path), "target": ",".join(s.targets), "n_params": s.n_params}
        for i in range(k):
            has = s.eigenvalues is not None and i < len(s.eigenvalues)
            row[f"lambda_{i + 1}"] = float(s.eigenvalues[i]) if has else np.nan
        row["all_converged"] = bool(np.all(s.converged)) if s.converged is not None else None
        row["lambda_max"] = s.lambda_max if s.lambda_max is not None else np.nan
        row["lambda_min"] = s.lambda_min if s.lambda_min is not None else np.nan
        row["lambda_ratio"] = s.ratio if s.ratio is not None else np.nan
        row["trace"] = s.trace.trace if s.trace else np.nan
        row["trace_se"] = s.trace.se if s.trace else np.nan
        for key in ("study", "model", "landscape", "layer", "layer_index"):
            if key in prov:
                row[key] = prov[key]
        rows.append(row)
    return pd.DataFrame(rows)
