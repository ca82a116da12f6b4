"""The fast grid engine: prefix reuse, batched points, chunked head, layer streaming.

Same numbers as the reference engine (tests/test_engine_fast.py, and per model family
tests/test_families.py), computed with less work:

* Prefix reuse. Let k be the first decoder layer holding a target. The hidden states
  entering layer k do not depend on the grid point; they are computed once per
  sequence batch (at construction) and every point runs layers k.. only, each called
  with what the model's own forward passed it (llmscape.architecture.LayerCalls: the
  causal or sliding-window mask, rotary tables, position ids).
* Batched points. A block of K points runs as one batch of K x B rows (point-major:
  row = p * B + s). A perturbed ``nn.Linear`` keeps its weight W; a forward hook adds
  the per-point term sum_a c_pa x D_a^T as ONE matmul, [c_p1 x, c_p2 x] @ [D_1 D_2]^T,
  accumulated into x W^T in place. No per-point weight is ever materialized. A
  ``Conv1D`` (GPT-2; weight stored [in, out]) gets the same hook with x D_a. The
  input embedding is linear in its weight too: E(ids) is part of the prefix and the
  point's sum_a c_pa E(ids; D_a) is added to it. Any other targeted tensor (norm
  weights) falls back to a per-point loop over the module with theta* + sum c d
  written into a fresh tensor (never into the model's own weight).
* Chunked head. Only the positions that predict a token go through the head, in
  vocabulary chunks; per chunk we keep the log-sum-exp, the max and its index, and
  the target's logit, so the logits of a block are never materialized whole. Gemma2's
  final logit softcapping c tanh(z / c) is applied per chunk before the log-sum-exp.
  A tied head (lm_head.weight is embed_tokens.weight) is perturbed when the
  embedding is, exactly as in the reference engine.
* Streaming. With ``stream: true`` the model is an empty skeleton and layers are
  brought in one at a time, layer-major: each layer is loaded once per block of
  points and the hidden states of every sequence batch of the block pass through it
  (engine/streaming.py). The layer inputs are then built the Llama way (llmscape/llama.py),
  so streaming takes the Llama-layout families only (``llama.STREAMABLE``).
* Memory. ``memory_mb`` bounds activations (and, when streaming, the one layer and
  head chunk on the device); the block size K and vocabulary chunk follow from it.
  A block that runs out of memory is retried with half the points.

Which of these apply depends on the model and the targets (``describe()["path"]``); the
model's structure is found and checked by llmscape.architecture, and a path other than
``layers`` is logged with its reason:

* ``layers``: all of the above. Every family whose recorded layer calls replay exactly.
* ``base``: batched points and chunked head, no prefix reuse: each block runs the base
  model's own forward on the K x B rows with the hooks installed (the embedding's as a
  hook too). When the replay check fails, or when a targeted input embedding does not
  enter layer 0 as it is (GPT-2 and OPT add position embeddings, OPT projects).
* ``logits``: batched points through the whole model's forward and its own full logits,
  when the head check fails (a logit transform llmscape does not know).
* ``pointwise``: one forward per point with theta* + sum c d passed for the targets
  (``torch.func.functional_call``), when a target sits outside the decoder layers, input
  embedding, final norm and head (position embeddings, OPT's project_in).
"""

from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.func import functional_call

from llmscape import llama
from llmscape.architecture import LayerCalls, call_layer, discover, embedding_delta
from llmscape.data import EvalSet
from llmscape.directions import Direction
from llmscape.engine import OPTION_DEFAULTS, OPTIONS_OF
from llmscape.errors import LlmscapeError
from llmscape.loss import SequenceStats

log = logging.getLogger("llmscape")

# The fast engine's options and their defaults (documented in llmscape.engine, their one home).
DEFAULTS = {k: OPTION_DEFAULTS[k] for k in OPTIONS_OF["fast"]}
PATHS = ("layers", "base", "logits", "pointwise")


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
    ids: torch.Tensor  # [B, T] token ids the model runs on
    mask: torch.Tensor  # [B, T] attention mask
    b: int
    t: int  # positions the model runs on (the batch's width - 1)
    pred_index: torch.Tensor  # positions predicting a token, into [B*T]
    pred_labels: torch.Tensor  # the token each of them predicts
    pred_col: torch.Tensor  # the output column each prediction is summed into (llmscape.data.Targets)
    hidden: torch.Tensor | None = None  # [B, T, H] entering the start layer (path "layers")
    calls: LayerCalls | None = None  # what each decoder layer is called with (path "layers")
    embed_delta: torch.Tensor | None = None  # [n_axes, B, T, H]: E(ids; D_a) when the embedding is perturbed


class _ForwardHook:
    """A perturbation installed as a forward hook on its module for one block (``__call__`` edits the output)."""

    module: torch.nn.Module
    block: Block | None = None
    handle = None

    def install(self, block: Block) -> None:
        self.block = block
        self.handle = self.module.register_forward_hook(self)

    def remove(self) -> None:
        self.handle.remove()
        self.handle = self.block = None


class _LinearDelta(_ForwardHook):
    """Forward hook adding sum_a c_pa (x D_a^T + db_a) to an nn.Linear's output, per point.

    ``transposed``: a Conv1D, whose weight and directions are stored [in, out] (x D_a).
    """

    def __init__(self, module: torch.nn.Module, weight_dirs, bias_dirs, transposed: bool = False):
        self.module = module
        self.weight_dirs = weight_dirs  # list over axes of [out, in] ([in, out] if transposed), or None
        self.bias_dirs = bias_dirs  # list over axes of [out], or None
        self.transposed = transposed
        self.dcat = None
        self.bcat = None

    def nbytes(self, elt: int) -> int:
        n = sum(d.numel() for d in (self.weight_dirs or [])) + sum(d.numel() for d in (self.bias_dirs or []))
        return n * elt

    def to_device(self, device, dtype) -> None:
        if self.weight_dirs is not None and self.dcat is None:
            dirs = [d.to(device, dtype) for d in self.weight_dirs]
            # [n_axes * in, out]: the rows of axis a multiply c_pa x
            self.dcat = (
                torch.cat(dirs, dim=0).contiguous() if self.transposed else torch.cat(dirs, dim=1).t().contiguous()
            )
        if self.bias_dirs is not None and self.bcat is None:
            self.bcat = torch.stack([d.to(device, dtype) for d in self.bias_dirs])

    def drop(self) -> None:
        self.dcat = self.bcat = None

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


class _EmbedDelta(_ForwardHook):
    """Forward hook adding sum_a c_pa E(ids; D_a) to the input embedding's output, per point (paths base, logits).

    E(ids; D) = E at weight D minus E at weight 0 (``architecture.embedding_delta``): exact for an
    embedding affine in its weight, a scaled one (Gemma) included. Every point embeds the same ids.
    """

    def __init__(self, module: torch.nn.Module, dirs: list[torch.Tensor]):
        self.module = module
        self.dirs = dirs
        self.dev = None
        self.busy = False  # embedding_delta calls the module: its own hook must not run then

    def nbytes(self, elt: int) -> int:
        return sum(d.numel() for d in self.dirs) * elt

    def to_device(self, device, dtype) -> None:
        if self.dev is None:
            self.dev = [d.to(device, dtype) for d in self.dirs]

    def drop(self) -> None:
        self.dev = None

    def __call__(self, module, args, out):
        if self.busy:
            return out
        k = self.block.k
        ids = args[0]
        ids0 = ids.reshape(k, -1, ids.shape[-1])[0]
        self.busy = True
        try:
            delta = torch.stack([embedding_delta(module, ids0, d) for d in self.dev])  # [n_axes, B, T, H]
        finally:
            self.busy = False
        shifted = out.view(k, *delta.shape[1:]) + torch.einsum("ka,abth->kbth", self.block.coeffs, delta.float())
        return shifted.to(out.dtype).view(out.shape)


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
                tensors = {a: perturbed(getattr(module, a), ds, coeffs) for a, ds in self.dev_dirs.items()}
                # tie_weights=False: only the named tensors change (no tied tensor sits in a fallback module)
                outs.append(functional_call(module, tensors, (xp, *args), kwargs, tie_weights=False))
        finally:
            module.forward = self._per_point
        return torch.cat(outs, dim=0)


def perturbed(own: torch.Tensor, dirs: list[torch.Tensor], coeffs) -> torch.Tensor:
    """theta* + sum_a c_a d_a in float32 from the untouched tensor, in its dtype (as the reference engine writes it)."""
    w = own.float()
    for c, d in zip(coeffs, dirs, strict=True):
        w = torch.add(w, d, alpha=float(c))
    return w.to(own.dtype)


def _is_conv1d(module: torch.nn.Module) -> bool:
    from transformers.pytorch_utils import Conv1D

    return isinstance(module, Conv1D)


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
        self.config = self.model.config
        self.data = data
        if self.provider.streaming:
            why = llama.streaming_problem(self.model, data.input_ids.shape[1])
            if why:
                raise LlmscapeError(f"stream: true builds the decoder layers' inputs the Llama way: {why}")
            self.arch = discover(self.model, verify=False)
            self.arch.tail = [self.model.model.norm]
        else:
            self.arch = discover(self.model)
        self.layers = self.arch.layers
        self.n_layers = self.arch.n_layers
        self.n_axes = len(directions)
        if self.n_axes < 1:
            raise LlmscapeError("the fast engine needs at least one direction")
        self._plan_targets(directions)
        self._plan_memory()
        self._prepare_prefix()

    def set_directions(self, directions: list[Direction]) -> None:
        """Evaluate along other directions over the same target tensors from now on, keeping the
        loaded model, the prefix and the memory plan (a basin search walks many directions)."""
        if len(directions) != self.n_axes or list(directions[0]) != self.target_names:
            raise LlmscapeError("set_directions needs as many directions over the same target tensors")
        path, start = self.path, self.start_layer
        self._plan_targets(directions)
        if (self.path, self.start_layer) != (path, start):  # the same names: the same plan
            raise LlmscapeError("set_directions changed the engine's path; build a new engine")
        if self.path == "layers" and self.embed_dirs is not None:
            with torch.no_grad():
                for batch in self.batches:
                    embed = self.provider.embed
                    batch.embed_delta = torch.stack(
                        [embedding_delta(embed, batch.ids, d.to(self.device, self.dtype)) for d in self.embed_dirs]
                    )

    # ------------------------------------------------------------------ planning
    def _plan_targets(self, directions: list[Direction]) -> None:
        """Sort every targeted tensor into: input embedding, head, linear hook, fallback, or outside; pick the path."""
        names = list(directions[0])
        by_name = dict(self.model.named_parameters(remove_duplicate=False))
        missing = [n for n in names if n not in by_name]
        if missing:
            raise LlmscapeError(f"direction tensors not in the model: {missing[:5]}")
        embed, head = self.provider.embed, self.provider.head
        tail = {id(m) for m in self.arch.tail}
        self.embed_dirs = None  # list over axes of [V, H]
        self.head_dirs = None
        self.head_bias_dirs = None
        self.point_dirs: dict[str, list[torch.Tensor]] = {}  # every target (path pointwise)
        self._point_dev: dict[str, list[torch.Tensor]] | None = None  # the same on the device, when first used
        linear: dict[int, dict] = {}
        fallback: dict[int, dict] = {}
        modules = {}
        owner = {}
        outside = []
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
            self.point_dirs[name] = dirs
            for mname, mod, pname in owner[id(p)]:
                if mod is embed and pname == "weight":
                    self.embed_dirs = dirs
                    self.start_layer = 0
                elif mod is head and pname == "weight":
                    self.head_dirs = dirs
                elif mod is head and pname == "bias":
                    self.head_bias_dirs = dirs
                else:
                    li = self.arch.layout.layer_index(f"{mname}.{pname}")
                    if li is None and id(mod) not in tail:
                        outside.append(name)
                        continue
                    if li is not None:
                        self.start_layer = min(self.start_layer, li)
                    modules[id(mod)] = (mname, mod, li)
                    additive = isinstance(mod, torch.nn.Linear) or _is_conv1d(mod)
                    if additive and pname in ("weight", "bias") and self.linear_mode == "additive":
                        linear.setdefault(id(mod), {})[pname] = dirs
                    else:
                        fallback.setdefault(id(mod), {})[pname] = dirs
        self.path, self.path_reason = self._choose_path(sorted(set(outside)))
        if self.path != "layers":
            log.warning("fast engine: path %r (slower than prefix reuse): %s", self.path, self.path_reason)
            self.start_layer = 0
        self.hooks_by_layer: dict[int | None, list] = {}
        if self.path == "pointwise":
            linear, fallback = {}, {}
        for key, parts in linear.items():
            mname, mod, li = modules[key]
            h = _LinearDelta(mod, parts.get("weight"), parts.get("bias"), transposed=_is_conv1d(mod))
            self.hooks_by_layer.setdefault(li, []).append(h)
        for key, parts in fallback.items():
            mname, mod, li = modules[key]
            self.hooks_by_layer.setdefault(li, []).append(_Fallback(mod, parts))
        if self.path in ("base", "logits") and self.embed_dirs is not None:
            self.hooks_by_layer.setdefault(None, []).append(_EmbedDelta(embed, self.embed_dirs))
        if self.path == "logits" and (self.head_dirs or self.head_bias_dirs):
            if isinstance(head, torch.nn.Linear):
                hook = _LinearDelta(head, self.head_dirs, self.head_bias_dirs)
            else:
                hook = _Fallback(
                    head, {"weight": self.head_dirs} | ({"bias": self.head_bias_dirs} if self.head_bias_dirs else {})
                )
            self.hooks_by_layer.setdefault(None, []).append(hook)
        self.n_linear = len(linear)
        self.n_fallback = len(fallback)
        self.target_names = names

    def _choose_path(self, outside: list[str]) -> tuple[str, str]:
        arch = self.arch
        if self.provider.streaming:
            if outside:
                raise LlmscapeError(f"the streaming fast engine cannot perturb {outside[:5]}; use stream: false")
            return "layers", ""
        if outside:
            return "pointwise", (
                f"target(s) {outside[:5]} sit outside the decoder layers, input embedding, final norm and head"
            )
        if not arch.head_exact:
            return "logits", arch.head_reason
        if not arch.sequential:
            return "base", arch.sequential_reason
        if self.embed_dirs is not None and not arch.embed_is_input:
            return "base", (
                "the input embedding is targeted and the hidden states entering layer 0 are not its output "
                "(the model adds position embeddings, scales or projects them)"
            )
        return "layers", ""

    def _plan_memory(self) -> None:
        o = self.options
        budget = int(float(o["memory_mb"]) * 2**20)
        cfg = self.config
        hidden = cfg.hidden_size
        inter = getattr(cfg, "intermediate_size", None) or 4 * hidden
        heads = cfg.num_attention_heads
        vocab = self.provider.embed.weight.shape[0]
        n_seq, t_max = self.data.input_ids.shape
        n_pred = len(self.data.predictions().row)
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
        if self.path in ("logits", "pointwise"):  # the model's full logits, and their float64 predicted rows
            per_row += 12 * t_max * vocab
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
        """Per sequence batch: ids, masks, label positions; path layers: the hidden states entering the start layer.

        What is predicted where comes from the evaluation set's targets (llmscape.data.Targets):
        every next token by default, or explicit (row, position, label, column) quadruples.
        """
        ids_all, mask_all = self.data.input_ids, self.data.attention_mask
        targets = self.data.predictions()
        lengths = mask_all.sum(dim=1)
        # Longest first, so each sequence batch holds similar lengths (less padding).
        order = torch.argsort(lengths, descending=True, stable=True)
        self.batches: list[_SeqBatch] = []
        for s0 in range(0, len(self.data), self.seq_batch):
            seq_ids = order[s0 : s0 + self.seq_batch]
            ids, mask = ids_all[seq_ids], mask_all[seq_ids]
            width = int(lengths[seq_ids].max())  # trim the padding common to the batch
            local, pos, label, column = (torch.as_tensor(x, device=self.device) for x in targets.of_rows(seq_ids))
            # The model runs on positions up to the last one that predicts (width - 2 for next
            # tokens): a later position influences, causally, no earlier one.
            t = int(pos.max()) + 1 if len(pos) else max(1, width - 1)
            ids, mask = ids[:, :t].to(self.device), mask[:, :t].to(self.device)
            batch = _SeqBatch(
                seq_ids=seq_ids.to(self.device),
                ids=ids,
                mask=mask,
                b=ids.shape[0],
                t=t,
                pred_index=local * t + pos,
                pred_labels=label,
                pred_col=column,
            )
            if self.path == "layers":
                if self.provider.streaming:
                    batch.hidden = self.provider.embed_ids(ids)
                    batch.calls = llama.layer_calls(self.model, batch.hidden, mask)
                else:
                    batch.hidden, batch.calls = self.arch.capture(ids, mask, self.start_layer)
                if self.embed_dirs is not None:
                    embed = self.provider.embed
                    batch.embed_delta = torch.stack(
                        [embedding_delta(embed, ids, d.to(self.device, self.dtype)) for d in self.embed_dirs]
                    )
            self.batches.append(batch)
        if self.path == "layers" and self.provider.streaming:
            # Layers before the start layer, layer-major.
            for i in range(self.start_layer):
                self.provider.ensure_layer(i)
                try:
                    for batch in self.batches:
                        batch.hidden = self._layer(i, batch, batch.hidden, 1)
                finally:
                    self.provider.release_layer(i)

    def _layer(self, i: int, batch: _SeqBatch, hidden: torch.Tensor, k: int) -> torch.Tensor:
        return call_layer(self.layers[i], hidden, batch.calls.for_points(k)[i])

    # ------------------------------------------------------------------ hooks
    @contextmanager
    def _patched(self, layers: list[int | None], block: Block):
        """Perturbation hooks of some layers (None: outside the layers) installed for a block."""
        installed = []
        hooks = [h for key in layers for h in self.hooks_by_layer.get(key, [])]
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
        """nll_sum and correct [K, C] for one block of K points (C output columns: one per sequence by default)."""
        k = len(coeffs)
        c_np = np.asarray(coeffs, dtype=np.float64)
        block = Block(k, torch.as_tensor(c_np, dtype=torch.float32, device=self.device), c_np)
        groups = [self.batches] if self.provider.streaming else [[b] for b in self.batches]
        n = self.data.n_columns
        nll = np.zeros((k, n))
        correct = np.zeros((k, n))
        for group in groups:
            owners = [self._owners(batch, k, n) for batch in group]
            if self.path in ("layers", "base"):
                finals = self._layers_block(group, block) if self.path == "layers" else self._base_block(group, block)
                rows, labels = [], []
                for batch, h in zip(group, finals, strict=True):
                    h = h.reshape(k, batch.b * batch.t, -1)[:, batch.pred_index]
                    rows.append(h.reshape(-1, h.shape[-1]))
                    labels.append(batch.pred_labels.repeat(k))
                nll_rows, ok_rows = self._head(torch.cat(rows), torch.cat(labels), torch.cat(owners) // n, block.coeffs)
            else:
                parts = [self._logits_block(batch, block) for batch in group]
                nll_rows, ok_rows = (torch.cat(x) for x in zip(*parts, strict=True))
            owner = torch.cat(owners).cpu()
            for acc, rows_ in ((nll, nll_rows), (correct, ok_rows)):
                summed = torch.zeros(k * n, dtype=torch.float64).index_add_(0, owner, rows_.double().cpu())
                acc += summed.numpy().reshape(k, n)
        return nll, correct

    def _owners(self, batch: _SeqBatch, k: int, n: int) -> torch.Tensor:
        """Per predicted row of the block (point-major): point * C + the prediction's output column."""
        col = batch.pred_col
        pts = torch.arange(k, device=self.device).repeat_interleave(len(col))
        return pts * n + col.repeat(k)

    def _layers_block(self, group: list[_SeqBatch], block: Block) -> list[torch.Tensor]:
        """Path layers: from the prefix, layers start.. (layer-major over the group), then the tail."""
        k = block.k
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
                with self._patched([i], block):
                    for batch in group:
                        hidden[id(batch)] = self._layer(i, batch, hidden[id(batch)], k)
            finally:
                self.provider.release_layer(i)
        with self._patched([None], block):
            return [self.arch.run_tail(hidden.pop(id(batch))) for batch in group]

    def _base_block(self, group: list[_SeqBatch], block: Block) -> list[torch.Tensor]:
        """Path base: the base model's own forward over the K copies of each batch, every hook installed."""
        k = block.k
        with self._patched(list(self.hooks_by_layer), block):
            return [self.arch.base_hidden(b.ids.repeat(k, 1), b.mask.repeat(k, 1)) for b in group]

    def _logits_block(self, batch: _SeqBatch, block: Block) -> tuple[torch.Tensor, torch.Tensor]:
        """Paths logits and pointwise: per predicted row (point-major), NLL and correctness from the model's logits."""
        k = block.k
        kwargs = {"use_cache": False}
        if self.path == "logits":
            with self._patched(list(self.hooks_by_layer), block):
                logits = self.model(input_ids=batch.ids.repeat(k, 1), attention_mask=batch.mask.repeat(k, 1), **kwargs)
            per_point = logits.logits.view(k, batch.b * batch.t, -1)
        else:
            params = dict(self.model.named_parameters(remove_duplicate=False))
            if self._point_dev is None:
                self._point_dev = {
                    n: [d.to(self.device, torch.float32) for d in ds] for n, ds in self.point_dirs.items()
                }
            per_point = []
            for coeffs in block.coeffs_np:
                tensors = {n: perturbed(params[n], ds, coeffs) for n, ds in self._point_dev.items()}
                out = functional_call(
                    self.model, tensors, (), {"input_ids": batch.ids, "attention_mask": batch.mask, **kwargs}
                )
                per_point.append(out.logits.reshape(batch.b * batch.t, -1))
            per_point = torch.stack(per_point)
        rows = per_point[:, batch.pred_index].reshape(-1, per_point.shape[-1]).double()
        labels = batch.pred_labels.repeat(k)
        nll = torch.logsumexp(rows, dim=1) - rows.gather(1, labels.unsqueeze(1)).squeeze(1)
        return nll, (rows.argmax(dim=1) == labels).double()

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
        c = coeffs[point] if self.head_dirs is not None or self.head_bias_dirs is not None else None  # [R, n_axes]
        if self.head_dirs is not None:
            hs = [(h * c[:, a : a + 1]).to(h.dtype) for a in range(self.n_axes)]
        bias = getattr(self.provider.head, "bias", None)
        for v0 in range(0, vocab, self.head_chunk):
            v1 = min(v0 + self.head_chunk, vocab)
            w = self.provider.head_rows(v0, v1)
            logits = h @ w.t()
            if self.head_dirs is not None:  # + sum_a (c_a h) D_a^T, no per-point head
                for ha, d in zip(hs, self.head_dirs, strict=True):
                    logits.addmm_(ha, d[v0:v1].to(self.device, self.dtype).t())
            if bias is not None:
                logits += bias[v0:v1]
            if self.head_bias_dirs is not None:  # + sum_a c_a db_a
                db = torch.stack([d[v0:v1].to(self.device, torch.float32) for d in self.head_bias_dirs])
                logits += (c @ db).to(logits.dtype)
            logits = self.arch.cap(logits.float())
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
            "path": self.path,
            "start_layer": int(self.start_layer),
            "n_layers": int(self.n_layers),
            "linear_mode": self.linear_mode,
            "linear_hooks": int(self.n_linear),
            "fallback_modules": int(self.n_fallback),
            "perturbs_embedding": self.embed_dirs is not None,
            "perturbs_head": self.head_dirs is not None,
        }
