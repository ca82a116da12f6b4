"""Token NLL through the vocabulary head, chunked over the vocabulary and differentiable twice.

For predicted positions' final hidden states h [M, H], the head W [V, H] and logits
Z = h W^T, the loss of token m with label y_m is

    nll_m = lse_m - Z[m, y_m],      lse_m = log sum_v exp Z[m, v].

First derivative of lse (g: the upstream gradient, one value per row):

    P = softmax(Z),   A = g P,   grad_h = A W,   grad_W = A^T h.

Second derivative: for cotangents (u_h, u_W) of (grad_h, grad_W), the scalar
Phi = <u_h, A W> + <u_W, A^T h> = sum_mv A_mv S_mv with S = u_h W^T + h u_W^T, and with
r = rowsum(P * S):

    dPhi/dZ = G = A * (S - r),   dh = G W + A u_W,   dW = G^T h + A^T u_h,   dg = r.

Every one of these is a sum over vocabulary rows, so each is accumulated over chunks of
``chunk`` rows of W, recomputing P per chunk from the saved lse. Why: a Hessian-vector
product differentiates the head twice, and autograd through plain logits would keep
the [M, V] logits and two derivatives of them alive (V = 49k for SmolLM2); here nothing
of size [M, V] exists, in the forward, the backward or the double backward.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


class _LogSumExpGrad(torch.autograd.Function):
    """Backward of ``_ChunkedLogSumExp`` as a function of (h, W, g): (grad_h, grad_W), itself differentiable."""

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
        # the second derivative of the module docstring; r needs a full pass over the
        # vocabulary before G can be formed, hence two passes over the chunks
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
        # through a Function of its own, so that autograd can differentiate this backward again
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
