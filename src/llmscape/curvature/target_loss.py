"""The landscape loss as a function of the target tensors: value, gradient, Hessian-vector product.

With N sequences, n_s predicted tokens in sequence s and nll_st the next-token NLL,

    L(theta) = 1/N sum_s 1/n_s sum_t nll_st(theta),

``llmscape.loss``'s definition, where theta is the target tensors only: every other
weight stays frozen at its current value theta*. Each predicted token carries the fixed
weight 1 / (N n_s), so L is a plain sum over batches and so are its derivatives. The
Hessian acts on a direction v by Pearlmutter's trick, a double backward:

    H v = grad_theta( grad_theta L . v ),

the gradient taken with ``create_graph=True``, then the gradient of its dot product with v.
It runs through eager attention (CPU SDPA has no double backward) and never forms H.

Two savings, since a spectrum costs hundreds of products:

- the vocabulary head is ``head.chunked_token_nll``: no [tokens, vocab] logits, and only
  predicted positions enter it (padding never does). A head bias b is folded in as one more
  column, z = [h, 1] [W, b]^T, so the chunked head stays exact (Phi);
- prefix reuse: when every target lives in decoder layers >= k, nothing below layer k
  depends on theta, so the hidden states entering layer k, and what every layer is called
  with (masks, rotary tables: recorded from the model's own forward, llmscape.architecture),
  are computed once without grad and each product runs layers k.. and the final norm only.
  Checked once against the full forward; on a mismatch it falls back with a warning.

Where these do not apply the loss stays exact and says why in the log: a model with final
logit softcapping (Gemma2: z = c tanh(y / c)) gets full logits through that map and
``F.cross_entropy``; a model whose logits are not head(last hidden state) (a transform
llmscape does not know) gets its own forward's logits; a model whose layers cannot be
replayed runs the base model's forward from the embedding.
"""

from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from llmscape.architecture import Architecture, Layout, discover
from llmscape.curvature.head import chunked_token_nll
from llmscape.data import EvalSet
from llmscape.errors import LlmscapeError
from llmscape.loss import shifted_targets

log = logging.getLogger("llmscape")

# sequences per forward: bounds the activations a double backward keeps alive
BATCH_SIZE = 8


@dataclass
class _Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_weights: torch.Tensor  # [M] weight of each predicted token in L (1 / (N * n_tokens of its sequence))
    labels: torch.Tensor  # [M]
    positions: torch.Tensor  # [B, T-1] bool: predicted positions


class PrefixCache:
    """Per batch, the hidden states entering decoder layer ``start`` and each layer's call, recorded without grad.

    Recorded from the base model's own forward (``Architecture.capture``); ``hidden_states``
    replays layers ``start..`` and the tail (final norm) with grad. Stale if weights below
    ``start`` change.
    """

    def __init__(self, arch: Architecture, start: int):
        self.arch, self.start = arch, start
        self._cache: dict[int, tuple] = {}

    def hidden_states(self, key: int, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Final normed hidden states [B, T, H], running only layers ``start..`` with grad."""
        if key not in self._cache:
            with torch.no_grad():
                h, calls = self.arch.capture(ids, mask, self.start)
            self._cache[key] = (h, calls.for_points(1))
        h, calls = self._cache[key]
        return self.arch.run_tail(self.arch.run_layers(h, calls, self.start))


def first_target_layer(targets: list[str], layout: Layout | None = None) -> int | None:
    """The lowest decoder layer holding a target, or None when some target is outside the layers."""
    if layout is None:
        from llmscape.targets import layer_index

        layers = [layer_index(t) for t in targets]
    else:
        layers = [layout.layer_index(t) for t in targets]
    return None if any(i is None for i in layers) else min(layers)


class TargetLoss:
    """The landscape loss L(theta) as a function of the target tensors, differentiable twice.

    ``model`` is a causal LM of any family (loaded eager: CPU SDPA has no double backward);
    its weights are read live, never copied. The vocabulary projection runs in chunks of
    ``vocab_chunk`` rows; ``prefix_reuse`` runs only the layers from the first targeted
    one (see ``PrefixCache``). ``head_mode`` says how the logits are formed (module docstring).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        data: EvalSet,
        targets: list[str],
        prefix_reuse: bool = True,
        vocab_chunk: int = 8192,
    ):
        if not targets:
            raise LlmscapeError("curvature needs at least one target tensor")
        params = dict(model.named_parameters(remove_duplicate=False))
        missing = [t for t in targets if t not in params]
        if missing:
            raise LlmscapeError(f"target tensors not in the model: {missing[:5]}; names look like {list(params)[:4]}")
        self.model, self.data, self.targets = model, data, list(targets)
        self.params = {t: params[t] for t in self.targets}
        self.shapes = {t: tuple(p.shape) for t, p in self.params.items()}
        self.n_params = sum(p.numel() for p in self.params.values())
        self.vocab_chunk = vocab_chunk
        self.device = next(model.parameters()).device
        self.arch = arch = discover(model)
        self.base = arch.base
        # how the logits are formed: chunked head | full logits through the softcap | the model's own forward
        if not arch.head_exact:
            self.head_mode = "model"
            log.warning(
                "curvature: %s; the loss uses the model's own full logits, without prefix reuse", arch.head_reason
            )
        elif arch.softcap is not None:
            self.head_mode = "softcap"
            log.warning(
                "curvature: final logit softcapping (c = %g): full [tokens, vocab] logits instead of the chunked head",
                arch.softcap,
            )
        else:
            self.head_mode = "chunked"
        self.batches = self._make_batches(BATCH_SIZE)
        self.prefix: PrefixCache | None = None
        start = first_target_layer(self.targets, arch.layout)
        if prefix_reuse and start and self.head_mode != "model":
            if arch.sequential:
                self.prefix = PrefixCache(arch, start)
                self._check_prefix()
            else:
                log.warning("curvature: no prefix reuse: %s", arch.sequential_reason)

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
        return self.arch.head.weight

    # -- the loss -----------------------------------------------------------------------

    def _hidden_states(self, i: int, b: _Batch) -> torch.Tensor:
        if self.prefix is not None:
            return self.prefix.hidden_states(i, b.input_ids, b.attention_mask)
        return self.arch.base_hidden(b.input_ids, b.attention_mask)

    def _token_nll(self, i: int, b: _Batch) -> torch.Tensor:
        """NLL of each predicted token of the batch [M]."""
        if self.head_mode == "model":
            out = self.model(input_ids=b.input_ids, attention_mask=b.attention_mask, use_cache=False)
            return self._cross_entropy(out.logits[:, :-1][b.positions], b.labels)
        h = self._hidden_states(i, b)[:, :-1][b.positions]
        if self.head_mode == "softcap":
            return self._cross_entropy(self.arch.logits(h), b.labels)
        weight, bias = self.head_weight, self.arch.head_bias
        if bias is not None:  # z = [h, 1] [W, b]^T
            h = torch.cat([h, torch.ones_like(h[:, :1])], dim=1)
            weight = torch.cat([weight, bias.unsqueeze(1).to(weight.dtype)], dim=1)
        return chunked_token_nll(h, weight, b.labels, self.vocab_chunk)

    @staticmethod
    def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        dtype = torch.promote_types(logits.dtype, torch.float32)  # as chunked_token_nll computes
        return F.cross_entropy(logits.to(dtype), labels, reduction="none")

    def _batch_loss(self, i: int, b: _Batch) -> torch.Tensor:
        """This batch's share of L (its sequences' mean token NLL, divided by N)."""
        nll = self._token_nll(i, b)
        return (nll * b.token_weights.to(nll.dtype)).sum()

    @contextmanager
    def _targets_require_grad(self):
        # prepared models come frozen (models.load_prepared): switching on the targets only
        # keeps autograd from building graph for the other weights; the caller's flags come back
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
                "(this architecture's layer stack is not LlamaModel's)",
                reused,
                full,
            )
