"""The fast grid engine: prefix reuse, batched points, chunked head, layer streaming.

Same numbers as the reference engine (tests/test_engine_fast.py), computed with less
work:

* Prefix reuse. Let k be the first decoder layer holding a target. The hidden states
  entering layer k do not depend on the grid point; they are computed once per
  sequence batch (at construction) and every point runs layers k.. only.
* Batched points. A block of K points runs as one batch of K x B rows (point-major:
  row = p * B + s). A perturbed ``nn.Linear`` keeps its weight W; a forward hook adds
  the per-point term sum_a c_pa x D_a^T as ONE matmul, [c_p1 x, c_p2 x] @ [D_1 D_2]^T,
  accumulated into x W^T in place. No per-point weight is ever materialized. The
  input embedding is linear in its weight too: W[ids] is part of the prefix and the
  point's sum_a c_pa D_a[ids] is added to it. Any other targeted tensor (RMSNorm
  weights) falls back to a per-point loop over the module with theta* + sum c d
  written into a fresh tensor (never into the model's own weight).
* Chunked head. Only the positions that predict a token go through the head, in
  vocabulary chunks; per chunk we keep the log-sum-exp, the max and its index, and
  the target's logit, so the logits of a block are never materialized whole.
  A tied head (lm_head.weight is embed_tokens.weight) is perturbed when the
  embedding is, exactly as in the reference engine.
* Streaming. With ``stream: true`` the model is an empty skeleton and layers are
  brought in one at a time, layer-major: each layer is loaded once per block of
  points and the hidden states of every sequence batch of the block pass through it
  (engine/streaming.py).
* Memory. ``memory_mb`` bounds activations (and, when streaming, the one layer and
  head chunk on the device); the block size K and vocabulary chunk follow from it.
  A block that runs out of memory is retried with half the points.

The decoder layers, rotary embedding and causal mask are the model's own modules
(``transformers`` Llama-style: ``model.model.{embed_tokens,layers,norm,rotary_emb}``),
called exactly as ``LlamaModel.forward`` calls them (llmscape/llama.py).
"""

from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call

from llmscape import llama
from llmscape.data import EvalSet
from llmscape.directions import Direction
from llmscape.engine import OPTION_DEFAULTS, OPTIONS_OF
from llmscape.errors import LlmscapeError
from llmscape.loss import SequenceStats, shifted_targets
from llmscape.targets import layer_index

log = logging.getLogger("llmscape")

# The fast engine's options and their defaults (documented in llmscape.engine, their one home).
DEFAULTS = {k: OPTION_DEFAULTS[k] for k in OPTIONS_OF["fast"]}


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    msg = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in msg or "can't allocate memory" in msg)


@dataclass(frozen=True)
class Block:
    """The grid points one block runs, as the perturbation hooks read them."""

    k: int  # points in the block
    coeffs: torch.Tensor  # [K, n_axes] float32 on the compute device (a bf16 coefficient would move the point)
    coeffs_np: np.ndarray  # [K, n_axes] float64


@dataclass(eq=False)
class _SeqBatch:
    """One sequence batch: its inputs to the per-point layers, and which positions predict which label."""

    seq_ids: torch.Tensor  # rows of the eval set, in batch order
    mask: torch.Tensor  # [B, T] attention mask
    b: int
    t: int  # positions the model runs on (the batch's width - 1)
    position_ids: torch.Tensor
    position_embeddings: tuple[torch.Tensor, torch.Tensor]
    hidden: torch.Tensor  # [B, T, H] entering the start layer (set layer by layer while preparing)
    pred_index: torch.Tensor  # positions predicting a token, into [B*T]
    pred_labels: torch.Tensor  # the token each of them predicts
    pred_seq: torch.Tensor  # the batch row each of them is in
    embed_delta: torch.Tensor | None = None  # [n_axes, B, T, H]: D_a[ids] when the embedding is perturbed
    masks: dict[int, object] = field(default_factory=dict)  # causal mask per block size K


class _LinearDelta:
    """Forward hook adding sum_a c_pa (x D_a^T + db_a) to an nn.Linear's output, per point."""

    def __init__(self, module: torch.nn.Linear, weight_dirs, bias_dirs):
        self.module = module
        self.weight_dirs = weight_dirs  # list over axes of [out, in] (CPU float32), or None
        self.bias_dirs = bias_dirs  # list over axes of [out], or None
        self.dcat = None
        self.bcat = None
        self.block: Block | None = None
        self.handle = None

    def nbytes(self, elt: int) -> int:
        n = sum(d.numel() for d in (self.weight_dirs or [])) + sum(d.numel() for d in (self.bias_dirs or []))
        return n * elt

    def to_device(self, device, dtype) -> None:
        if self.weight_dirs is not None and self.dcat is None:
            self.dcat = torch.cat([d.to(device, dtype) for d in self.weight_dirs], dim=1).t().contiguous()
        if self.bias_dirs is not None and self.bcat is None:
            self.bcat = torch.stack([d.to(device, dtype) for d in self.bias_dirs])

    def drop(self) -> None:
        self.dcat = self.bcat = None

    def install(self, block: Block) -> None:
        self.block = block
        self.handle = self.module.register_forward_hook(self)

    def remove(self) -> None:
        self.handle.remove()
        self.handle = self.block = None

    def __call__(self, module, args, out):
        x = args[0]
        k = self.block.k
        c = self.block.coeffs  # [K, n_axes]
        out3 = out.view(k, -1, out.shape[-1])
        if self.dcat is not None:
            x3 = x.reshape(k, -1, x.shape[-1])
            if c.shape[1] == 1:
                xs = (x3 * c[:, 0].view(k, 1, 1)).to(x.dtype)
            else:
                xs = torch.cat([(x3 * c[:, a].view(k, 1, 1)).to(x.dtype) for a in range(c.shape[1])], dim=-1)
            out2 = out3.view(-1, out.shape[-1])
            out2.addmm_(xs.view(-1, xs.shape[-1]), self.dcat)
        if self.bcat is not None:
            out3.add_((c @ self.bcat.float()).to(out.dtype).unsqueeze(1))
        return out


class _Fallback:
    """Per-point loop over a module whose targeted tensors are not nn.Linear weights.

    Each point's tensor theta* + sum_a c_pa d_a is computed as the reference engine
    computes it, into a fresh tensor the module runs with for that call only
    (``torch.func.functional_call``; the module's own tensors are never written).
    """

    def __init__(self, module: torch.nn.Module, dirs: dict[str, list[torch.Tensor]]):
        self.module = module
        self.dirs = dirs  # attribute name -> list over axes
        self.dev_dirs: dict[str, list[torch.Tensor]] | None = None
        self.block: Block | None = None

    def nbytes(self, elt: int) -> int:
        return sum(d.numel() for ds in self.dirs.values() for d in ds) * 4

    def to_device(self, device, dtype) -> None:
        if self.dev_dirs is None:
            self.dev_dirs = {a: [d.to(device, torch.float32) for d in ds] for a, ds in self.dirs.items()}

    def drop(self) -> None:
        self.dev_dirs = None

    def install(self, block: Block) -> None:
        self.block = block
        self.module.forward = self._per_point  # an instance attribute: shadows the class's forward

    def remove(self) -> None:
        self.module.__dict__.pop("forward", None)
        self.block = None

    def _per_point(self, x, *args, **kwargs):
        module, block = self.module, self.block
        # functional_call calls the module: let that call reach the class's forward.
        del module.forward
        try:
            outs = []
            for coeffs, xp in zip(block.coeffs_np, x.chunk(block.k, dim=0), strict=True):
                tensors = {}
                for a, ds in self.dev_dirs.items():
                    own = getattr(module, a)
                    w = own.float()
                    for c, d in zip(coeffs, ds, strict=True):
                        w = torch.add(w, d, alpha=float(c))
                    tensors[a] = w.to(own.dtype)
                # tie_weights=False: only the named tensors change (no tied tensor sits in a fallback module)
                outs.append(functional_call(module, tensors, (xp, *args), kwargs, tie_weights=False))
        finally:
            module.forward = self._per_point
        return torch.cat(outs, dim=0)


class FastEngine:
    name = "fast"

    def __init__(self, model, data: EvalSet, directions: list[Direction], **options):
        unknown = set(options) - set(DEFAULTS)
        if unknown:
            raise LlmscapeError(f"unknown fast engine option(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
        self.options = {**DEFAULTS, **options}
        o = self.options
        from llmscape.engine.streaming import ResidentWeights, StreamedWeights

        if isinstance(model, (str, Path)):
            if o["stream"]:
                self.provider = StreamedWeights(model, o["dtype"], o["device"], o["offload"])
            else:
                from llmscape.models import load_prepared

                loaded, _ = load_prepared(model, o["dtype"], o["device"])
                self.provider = ResidentWeights(loaded)
        else:
            if o["stream"]:
                raise LlmscapeError("stream: true needs the model directory, not a loaded model")
            self.provider = ResidentWeights(model)
        self.model = self.provider.model
        self.device = self.provider.device
        self.dtype = self.provider.dtype
        self.elt = torch.empty((), dtype=self.dtype).element_size()
        inner = getattr(self.model, "model", None)
        for attr in ("layers", "norm", "rotary_emb", "embed_tokens"):
            if not hasattr(inner, attr):
                raise LlmscapeError(
                    f"the fast engine needs a Llama-style model (model.model.{attr}); "
                    f"{type(self.model).__name__} lacks it: use engine.kind: reference"
                )
        self.layers = inner.layers
        self.n_layers = len(self.layers)
        self.config = self.model.config
        self.data = data
        self.n_axes = len(directions)
        if self.n_axes < 1:
            raise LlmscapeError("the fast engine needs at least one direction")
        self._plan_targets(directions)
        self._plan_memory()
        self._prepare_prefix()

    # ------------------------------------------------------------------ planning
    def _plan_targets(self, directions: list[Direction]) -> None:
        """Sort every targeted tensor into: input embedding, head, linear hook, or fallback."""
        names = list(directions[0])
        by_name = dict(self.model.named_parameters(remove_duplicate=False))
        missing = [n for n in names if n not in by_name]
        if missing:
            raise LlmscapeError(f"direction tensors not in the model: {missing[:5]}")
        embed_w = self.provider.embed.weight
        head_w = self.provider.head.weight
        self.embed_dirs = None  # list over axes of [V, H]
        self.head_dirs = None
        linear: dict[int, dict] = {}
        fallback: dict[int, dict] = {}
        modules = {}
        owner = {}
        for mname, mod in self.model.named_modules():
            for pname, p in mod.named_parameters(recurse=False):
                owner.setdefault(id(p), []).append((mname, mod, pname))
        self.start_layer = self.n_layers  # first layer that runs per point
        mode = self.options["linear_mode"]
        if mode not in ("auto", "additive", "materialize"):
            raise LlmscapeError(f"engine.linear_mode must be auto, additive or materialize, got {mode!r}")
        if mode == "auto":
            n_seq, t_max = self.data.input_ids.shape
            rows = min(n_seq, int(self.options["seq_batch"] or n_seq)) * t_max
            mode = "materialize" if rows >= int(self.options["materialize_rows"]) else "additive"
        self.linear_mode = mode
        for name in names:
            p = by_name[name]
            dirs = [d[name] for d in directions]
            for d in dirs:
                if tuple(d.shape) != tuple(p.shape):
                    raise LlmscapeError(f"direction for {name} has shape {tuple(d.shape)}, weight {tuple(p.shape)}")
            for mname, mod, pname in owner[id(p)]:
                if p is embed_w and mod is self.provider.embed:
                    self.embed_dirs = dirs
                    self.start_layer = 0
                    continue
                if p is head_w and mod is self.provider.head:
                    self.head_dirs = dirs
                    continue
                if mod is self.provider.head or mod is self.provider.embed:
                    raise LlmscapeError(f"the fast engine cannot perturb {name}; use engine.kind: reference")
                li = layer_index(mname + "." + pname)
                if li is None:
                    if mod is not self.model.model.norm:
                        raise LlmscapeError(
                            f"the fast engine cannot perturb {name} (module {mname}); use engine.kind: reference"
                        )
                else:
                    self.start_layer = min(self.start_layer, li)
                modules[id(mod)] = (mname, mod, li)
                if isinstance(mod, torch.nn.Linear) and pname in ("weight", "bias") and self.linear_mode == "additive":
                    linear.setdefault(id(mod), {})[pname] = dirs
                else:
                    fallback.setdefault(id(mod), {})[pname] = dirs
        self.hooks_by_layer: dict[int | None, list[_LinearDelta | _Fallback]] = {}
        for key, parts in linear.items():
            mname, mod, li = modules[key]
            h = _LinearDelta(mod, parts.get("weight"), parts.get("bias"))
            self.hooks_by_layer.setdefault(li, []).append(h)
        for key, parts in fallback.items():
            mname, mod, li = modules[key]
            self.hooks_by_layer.setdefault(li, []).append(_Fallback(mod, parts))
        self.n_linear = len(linear)
        self.n_fallback = len(fallback)
        self.target_names = names

    def _plan_memory(self) -> None:
        o = self.options
        budget = int(float(o["memory_mb"]) * 2**20)
        cfg = self.config
        hidden = cfg.hidden_size
        inter = getattr(cfg, "intermediate_size", 4 * hidden)
        heads = cfg.num_attention_heads
        vocab = self.provider.embed.weight.shape[0]
        n_seq, t_max = self.data.input_ids.shape
        n_pred = int(shifted_targets(self.data.input_ids, self.data.attention_mask)[1].sum())
        na = self.n_axes
        avail = budget
        self.layer_mb = None
        if self.provider.streaming:
            sizes = []
            for i in range(self.n_layers):
                extra = sum(h.nbytes(self.elt) for h in self.hooks_by_layer.get(i, []))
                sizes.append(self.provider.layer_bytes(i) + extra)
            big = int(np.argmax(sizes))
            self.layer_mb = sizes[big] / 2**20
            if sizes[big] >= budget:
                raise LlmscapeError(
                    f"engine.memory_mb={o['memory_mb']} is too small to stream this model: decoder layer {big} "
                    f"needs {self.layer_mb:.1f} MB on the device (weights and targeted directions); "
                    f"give at least {math.ceil(self.layer_mb * 1.5)} MB"
                )
            avail -= sizes[big]
        # Activation bytes of one sequence row of one point through one layer (generous).
        per_row = 4 * t_max * (10 * hidden + 5 * inter + na * max(hidden, inter) + 3 * heads * t_max)
        if o["seq_batch"]:
            seq_batch = int(o["seq_batch"])
        else:
            seq_batch = max(1, min(n_seq, int(0.3 * avail // per_row)))
        self.seq_batch = seq_batch
        store = 2 * n_seq * t_max * hidden * self.elt if self.provider.streaming else 0
        # Head: per point, n_pred rows of logits per chunk (+ scratch).
        per_point = seq_batch * per_row + store
        k = int(0.6 * avail // max(per_point, 1))
        self.max_k = max(1, min(int(o["max_block"]), k))
        if o["head_chunk"]:
            self.head_chunk = int(o["head_chunk"])
        else:
            rows = self.max_k * n_pred
            per_col = rows * 4 * (4 + na) + hidden * self.elt * (1 + (na if self.head_dirs else 0))
            # 4096 columns at most: the chunk's logits then stay cache-warm between the matmul
            # and the max/exp/sum passes (measured: 2048-4096 ~20% faster than 16k-49k on SmolLM2)
            self.head_chunk = int(max(256, min(vocab, 4096, 0.4 * avail // per_col)))
        self.block_size = self.max_k
        self._k_limit = self.max_k

    # ------------------------------------------------------------------ prefix
    @torch.no_grad()
    def _prepare_prefix(self) -> None:
        """Per sequence batch: ids, masks, label positions, hidden states entering the start layer."""
        ids_all, mask_all = self.data.input_ids, self.data.attention_mask
        lengths = mask_all.sum(dim=1)
        # Longest first, so each sequence batch holds similar lengths (less padding).
        order = torch.argsort(lengths, descending=True, stable=True)
        self.batches: list[_SeqBatch] = []
        for s0 in range(0, len(self.data), self.seq_batch):
            seq_ids = order[s0 : s0 + self.seq_batch]
            ids, mask = ids_all[seq_ids], mask_all[seq_ids]
            width = int(lengths[seq_ids].max())  # trim the padding common to the batch
            labels, lmask = shifted_targets(ids[:, :width], mask[:, :width])
            # The model runs on positions 0..width-2 only: the last position predicts
            # nothing and, causally, influences no earlier position.
            t = width - 1
            ids, mask = ids[:, :t].to(self.device), mask[:, :t].to(self.device)
            labels, lmask = labels.to(self.device), lmask.to(self.device)
            flat = lmask.reshape(-1).nonzero().squeeze(1)
            position_ids = llama.position_ids(t, self.device)
            h = self.provider.embed_ids(ids)
            embed_delta = None
            if self.embed_dirs is not None:
                embed_delta = torch.stack([F.embedding(ids, d.to(self.device, self.dtype)) for d in self.embed_dirs])
            batch = _SeqBatch(
                seq_ids=seq_ids.to(self.device),
                mask=mask,
                b=ids.shape[0],
                t=t,
                position_ids=position_ids,
                position_embeddings=self.model.model.rotary_emb(h, position_ids=position_ids),
                hidden=h,
                pred_index=flat,
                pred_labels=labels.reshape(-1)[flat],
                pred_seq=flat // t,
                embed_delta=embed_delta,
            )
            self.batches.append(batch)
        # Layers before the start layer, layer-major.
        for i in range(self.start_layer):
            self.provider.ensure_layer(i)
            try:
                for batch in self.batches:
                    batch.hidden = self._layer(i, batch, batch.hidden, 1)
            finally:
                self.provider.release_layer(i)

    def _mask(self, batch: _SeqBatch, k: int, like: torch.Tensor):
        if k not in batch.masks:
            mask = batch.mask.repeat(k, 1)
            batch.masks[k] = llama.causal_mask(self.config, like, mask, batch.position_ids)
        return batch.masks[k]

    def _layer(self, i: int, batch: _SeqBatch, hidden: torch.Tensor, k: int) -> torch.Tensor:
        mask = self._mask(batch, k, hidden)
        return llama.run_layer(self.layers[i], hidden, mask, batch.position_embeddings, batch.position_ids)

    # ------------------------------------------------------------------ hooks
    @contextmanager
    def _patched(self, layer: int | None, block: Block):
        """Perturbation hooks of one layer (None: outside the layers) installed for a block."""
        installed = []
        hooks = self.hooks_by_layer.get(layer, [])
        try:
            for h in hooks:
                h.to_device(self.device, self.dtype)
                h.install(block)
                installed.append(h)
            yield
        finally:
            for h in installed:
                h.remove()
            if self.provider.streaming:
                for h in hooks:
                    h.drop()

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def _run_block(self, coeffs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """nll_sum and correct [K, N] for one block of K points."""
        k = len(coeffs)
        c_np = np.asarray(coeffs, dtype=np.float64)
        block = Block(k, torch.as_tensor(c_np, dtype=torch.float32, device=self.device), c_np)
        groups = [self.batches] if self.provider.streaming else [[b] for b in self.batches]
        n = len(self.data)
        nll = np.zeros((k, n))
        correct = np.zeros((k, n))
        for group in groups:
            hidden = {}
            for batch in group:
                h = batch.hidden.repeat(k, 1, 1)
                if batch.embed_delta is not None:
                    delta = torch.einsum("ka,abth->kbth", block.coeffs, batch.embed_delta.float())
                    h = (h.view(k, batch.b, batch.t, -1) + delta).to(self.dtype).reshape(h.shape)
                hidden[id(batch)] = h
            for i in range(self.start_layer, self.n_layers):
                self.provider.ensure_layer(i)
                try:
                    with self._patched(i, block):
                        for batch in group:
                            hidden[id(batch)] = self._layer(i, batch, hidden[id(batch)], k)
                finally:
                    self.provider.release_layer(i)
            with self._patched(None, block):
                rows, labels, owners = [], [], []
                for batch in group:
                    h = self.model.model.norm(hidden.pop(id(batch)))
                    h = h.reshape(k, batch.b * batch.t, -1)[:, batch.pred_index]
                    rows.append(h.reshape(-1, h.shape[-1]))
                    labels.append(batch.pred_labels.repeat(k))
                    seq = batch.seq_ids[batch.pred_seq]
                    pts = torch.arange(k, device=self.device).repeat_interleave(len(seq))
                    owners.append(pts * n + seq.repeat(k))
                nll_rows, ok_rows = self._head(torch.cat(rows), torch.cat(labels), torch.cat(owners) // n, block.coeffs)
            owner = torch.cat(owners).cpu()
            for acc, rows_ in ((nll, nll_rows), (correct, ok_rows)):
                summed = torch.zeros(k * n, dtype=torch.float64).index_add_(0, owner, rows_.double().cpu())
                acc += summed.numpy().reshape(k, n)
        return nll, correct

    def _head(
        self, h: torch.Tensor, labels: torch.Tensor, point: torch.Tensor, coeffs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per row: NLL of its label and whether the argmax is the label, vocabulary in chunks.

        ``point``: each row's point in the block, whose coefficients are ``coeffs[point]``.
        """
        vocab = self.provider.head.weight.shape[0]
        r = h.shape[0]
        lses, maxes, argmaxes = [], [], []
        target = torch.empty(r, dtype=torch.float32, device=self.device)
        if self.head_dirs is not None:
            c = coeffs[point]  # [R, n_axes]
            hs = [(h * c[:, a : a + 1]).to(h.dtype) for a in range(self.n_axes)]
        for v0 in range(0, vocab, self.head_chunk):
            v1 = min(v0 + self.head_chunk, vocab)
            w = self.provider.head_rows(v0, v1)
            logits = h @ w.t()
            if self.head_dirs is not None:  # + sum_a (c_a h) D_a^T, no per-point head
                for ha, d in zip(hs, self.head_dirs, strict=True):
                    logits.addmm_(ha, d[v0:v1].to(self.device, self.dtype).t())
            bias = getattr(self.provider.head, "bias", None)
            if bias is not None:
                logits += bias[v0:v1]
            logits = logits.float()
            inside = (labels >= v0) & (labels < v1)
            if inside.any():
                sel = inside.nonzero().squeeze(1)
                target[sel] = logits[sel, labels[sel] - v0]
            mx, am = logits.max(dim=1)
            maxes.append(mx)
            argmaxes.append(am + v0)
            # log-sum-exp of the chunk in place (the logits are ours): max + log sum exp(l - max)
            lses.append(mx + logits.sub_(mx.unsqueeze(1)).exp_().sum(dim=1).log())
        lse = torch.logsumexp(torch.stack(lses, dim=1), dim=1)
        best = torch.stack(maxes, dim=1).argmax(dim=1)  # first chunk holding the max
        pred = torch.stack(argmaxes, dim=1).gather(1, best.unsqueeze(1)).squeeze(1)
        return lse - target, (pred == labels).float()

    def evaluate(self, coeffs: np.ndarray) -> SequenceStats:
        """Statistics at each point of ``coeffs`` [P, n_axes]; the weights are never written."""
        coeffs = np.atleast_2d(np.asarray(coeffs, dtype=np.float64))
        if coeffs.shape[1] != self.n_axes:
            raise LlmscapeError(f"coefficients have {coeffs.shape[1]} axes, the directions {self.n_axes}")
        nll, correct = [], []
        i = 0
        while i < len(coeffs):
            k = min(self._k_limit, len(coeffs) - i)
            try:
                s, c = self._run_block(coeffs[i : i + k])
            except RuntimeError as exc:  # torch.OutOfMemoryError is one
                if not is_oom(exc) or k == 1:
                    raise
                self._k_limit = max(1, k // 2)
                log.warning("fast engine: block of %d points ran out of memory; retrying with %d", k, self._k_limit)
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            nll.append(s)
            correct.append(c)
            i += k
        return SequenceStats(np.concatenate(nll), np.concatenate(correct))

    def describe(self) -> dict:
        """The options this engine runs with (stored in the landscape's provenance)."""
        o = self.options
        return {
            "name": self.name,
            "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""),
            "memory_mb": o["memory_mb"],
            "stream": bool(o["stream"]),
            "offload": getattr(self.provider, "offload", None),
            "block_size": int(self.block_size),
            "block_size_now": int(self._k_limit),
            "seq_batch": int(self.seq_batch),
            "head_chunk": int(self.head_chunk),
            "start_layer": int(self.start_layer),
            "n_layers": int(self.n_layers),
            "linear_mode": self.linear_mode,
            "linear_hooks": int(self.n_linear),
            "fallback_modules": int(self.n_fallback),
            "perturbs_embedding": self.embed_dirs is not None,
            "perturbs_head": self.head_dirs is not None,
        }
