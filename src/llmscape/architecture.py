"""Where a causal LM keeps its decoder layers, final norm and head: found from the model, not from names.

Every decoder-only causal LM that transformers loads computes its logits as

    h_0     = pre(ids)                       input embedding, and per family: + position embeddings
                                             (GPT-2, OPT), x sqrt(hidden) (Gemma), project_in (OPT)
    h_{i+1} = layer_i(h_i, extras_i)         i = 0..n-1; extras_i: causal mask (per layer type:
                                             full or sliding window), rotary embeddings, position ids
    z       = cap(head(tail(h_n)))           tail: final norm (+ OPT's project_out); head: lm_head
                                             (weight [V, H], optional bias); cap: Gemma2's final
                                             logit softcapping z -> c tanh(z / c), else identity

and its loss is causal when z at position t depends on tokens 0..t only. What differs between
families is ``pre``, the calling convention of the layers and ``extras_i``, the tail's modules
and the parameter names (``model.layers.<i>``, ``transformer.h.<i>``, ``gpt_neox.layers.<i>``,
``model.decoder.layers.<i>``). Rather than encoding each family, this module finds them:

* the layers: the ``nn.ModuleList`` of ``config.num_hidden_layers`` modules under the base model
  (the shallowest one), and its parameter-name prefix;
* the embedding and the head: ``get_input_embeddings()`` / ``get_output_embeddings()``;
* the tail: the modules of the layers' owner that the forward calls after the last layer, in
  call order (recorded by forward hooks on one real forward);
* ``extras_i``: recorded, not rebuilt. One forward with pre-hooks on the layers records what each
  layer receives (``LayerCalls``); replaying layers k.. from the recorded h_k and extras is the
  forward from layer k on. For K grid points batched as K copies of a batch of B sequences
  (point-major: row = p B + s), every recorded tensor of 2 or more dimensions whose first is B
  is repeated K times (masks, per-row position ids); the others (rotary tables [1, T, D])
  broadcast;
* which 2-D weights are ``transformers.pytorch_utils.Conv1D`` (GPT-2): stored [in, out], so an
  output unit is a column (``Layout.transposed``).

Then ``discover`` checks, on one forward of a 3 x 6 token probe (one row differs from another in
its last token only, one is right-padded), before any heavy work:

* causal: the logits before the last position do not change when the last token does. A model
  that fails (an encoder such as BERT loaded as a LM head model) is refused (``LlmscapeError``);
  its "landscape" would not be a next-token loss;
* head: cap(head(last hidden state of the base model)) reproduces the model's logits. When it
  does not (a logit transform this module does not know), callers use the model's own logits;
* replay: tail(layers 0..n-1 replayed from the recorded h_0, with K = 2) reproduces the base
  model's last hidden state. When it does not, callers run the base model's own forward (no
  prefix reuse);
* embedding input: h_0 equals the embedding's output (``pre`` is the embedding alone), so a
  perturbed embedding can be applied to h_0 directly.

Each check compares to the model's own forward within 1e-5 of the values' scale (float32;
3e-2 for 16-bit dtypes). A failed check never gives a wrong number: it selects a slower path,
with the reason logged by the caller. Tolerances of this size cannot tell a missing logit
transform that is nearly the identity (a softcap far above the logits) from none, which is why
the known one, ``final_logit_softcapping``, is read from the config rather than detected.

Without weights (a prepared directory), ``layer_prefix`` finds the prefix from tensor names and
the layer count alone, and ``layout_of_dir`` builds the model on the ``meta`` device (no memory)
to find its Conv1D weights.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.func import functional_call

from llmscape.errors import LlmscapeError

_NUMBERED = re.compile(r"\.(\d+)\.")
_FIRST_NUMBERED = re.compile(r"\.(\d+)\.(.+)$")


# ----------------------------------------------------------------------------- names


def layer_prefix(names: Iterable[str], n_layers: int) -> str | None:
    """The name prefix of the decoder layers (``model.layers``) from tensor names alone, or None.

    A candidate is everything before a numbered component ``.<i>.``; the prefix is the one whose
    indices cover 0..n_layers-1 (exactly, else at least), the shortest if several (MoE experts
    numbered inside a layer come after it).
    """
    indices: dict[str, set[int]] = {}
    for name in names:
        for m in _NUMBERED.finditer(name):
            indices.setdefault(name[: m.start()], set()).add(int(m.group(1)))
    want = set(range(n_layers))
    for exact in (True, False):
        found = [p for p, idx in indices.items() if (idx == want if exact else want <= idx)]
        if found:
            return min(found, key=lambda p: (p.count("."), len(p)))
    return None


def within_layer(name: str, prefix: str | None) -> tuple[int, str] | None:
    """(layer index, name within the layer) of ``<prefix>.<i>.<rest>``, else None.

    Without a prefix, the first numbered component of the name is taken for the layer index.
    """
    m = _FIRST_NUMBERED.search(name) if prefix is None else re.match(re.escape(prefix) + r"\.(\d+)\.(.+)$", name)
    return (int(m.group(1)), m.group(2)) if m else None


@dataclass(frozen=True)
class Layout:
    """Name-level facts of a model: where its decoder layers are, which weights are stored [in, out]."""

    n_layers: int
    prefix: str | None  # e.g. "model.layers", "transformer.h"; None when not found
    transposed: frozenset[str] = frozenset()  # Conv1D weight names (output unit = column)
    model_type: str = ""

    def split(self, name: str) -> tuple[int, str] | None:
        """(layer index, name within the layer) of a parameter inside a decoder layer, else None."""
        return None if self.prefix is None else within_layer(name, self.prefix)

    def layer_index(self, name: str) -> int | None:
        s = self.split(name)
        return None if s is None else s[0]


def _n_layers(config) -> int:
    n = getattr(config, "num_hidden_layers", None)
    if n is None:
        raise LlmscapeError(f"config of model type {getattr(config, 'model_type', '?')!r} has no num_hidden_layers")
    return int(n)


def _conv1d_names(model: torch.nn.Module) -> frozenset[str]:
    from transformers.pytorch_utils import Conv1D

    return frozenset(f"{n}.weight" for n, m in model.named_modules() if isinstance(m, Conv1D))


def find_layers(model: torch.nn.Module) -> tuple[str, torch.nn.ModuleList] | None:
    """(name, module) of the decoder layers: the shallowest ModuleList of num_hidden_layers modules with weights."""
    n = _n_layers(model.config)
    found = [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.ModuleList) and len(m) == n and any(True for _ in m.parameters())
    ]
    if not found:
        return None
    return min(found, key=lambda nm: nm[0].count("."))


def layout_of(model: torch.nn.Module) -> Layout:
    """The layout of a loaded (or meta) model."""
    layers = find_layers(model)
    prefix = layers[0] if layers else layer_prefix([n for n, _ in model.named_parameters()], _n_layers(model.config))
    return Layout(_n_layers(model.config), prefix, _conv1d_names(model), getattr(model.config, "model_type", ""))


def skeleton(model_dir: str | Path, dtype: torch.dtype | None = None) -> torch.nn.Module:
    """The model of a directory with every parameter on the ``meta`` device (nothing read, nothing allocated)."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_dir)
    with init_empty_weights():
        kwargs = {"attn_implementation": "eager"} | ({"dtype": dtype} if dtype is not None else {})
        model = AutoModelForCausalLM.from_config(config, **kwargs)
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()  # from_config leaves a tied head untied on the meta device
    return model


def layout_of_dir(model_dir: str | Path) -> Layout:
    """The layout of a prepared directory, from its config and a meta-device skeleton (no weights read)."""
    return layout_of(skeleton(model_dir))


# ----------------------------------------------------------------------------- recorded layer calls


def _expand(x, b: int, k: int, memo: dict):
    """x for K points: tensors of batch b (dim 0 == b, 2-D at least) repeated K times point-major."""
    if isinstance(x, torch.Tensor):
        if x.dim() >= 2 and x.shape[0] == b and k > 1:
            key = id(x)
            if key not in memo:
                memo[key] = x.repeat(k, *([1] * (x.dim() - 1)))
            return memo[key]
        return x
    if isinstance(x, tuple):
        return tuple(_expand(v, b, k, memo) for v in x)
    if isinstance(x, list):
        return [_expand(v, b, k, memo) for v in x]
    if isinstance(x, dict):
        return {n: _expand(v, b, k, memo) for n, v in x.items()}
    return x


class LayerCalls:
    """What each decoder layer received in one forward over a batch of ``b`` rows, besides the hidden states.

    ``calls[i]`` is (positional args after the hidden states, keyword args, whether the hidden
    states came positionally); None for a layer not recorded. ``for_points(k)`` gives them for
    K copies of the batch (cached per K; a mask shared by several layers is repeated once).
    """

    def __init__(self, calls: list, b: int):
        self.calls = calls
        self.b = b
        self._by_k: dict[int, list] = {}

    def for_points(self, k: int) -> list:
        if k not in self._by_k:
            memo: dict = {}
            self._by_k[k] = [None if c is None else _expand(c, self.b, k, memo) for c in self.calls]
        return self._by_k[k]


def call_layer(layer: torch.nn.Module, hidden: torch.Tensor, call) -> torch.Tensor:
    """One decoder layer on ``hidden`` with a recorded call's other arguments (first output if a tuple)."""
    rest, kwargs, positional = call
    out = layer(hidden, *rest, **kwargs) if positional else layer(hidden_states=hidden, **kwargs)
    return out[0] if isinstance(out, tuple) else out


class _Stop(Exception):
    """Raised by the last layer's pre-hook: what the capture needs is recorded, the rest of the forward is not."""


# ----------------------------------------------------------------------------- the architecture


def _tolerance(dtype: torch.dtype) -> float:
    return 1e-5 if dtype in (torch.float32, torch.float64) else 3e-2


def _mismatch(got: torch.Tensor, want: torch.Tensor) -> float | None:
    """None when got matches want within the dtype's tolerance of want's scale, else the max difference."""
    want_f, got_f = want.detach().float(), got.detach().float()
    if got_f.shape != want_f.shape:
        return float("inf")
    diff = float((got_f - want_f).abs().max()) if want_f.numel() else 0.0
    scale = max(1.0, float(want_f.abs().max()) if want_f.numel() else 1.0)
    return None if diff <= _tolerance(want.dtype) * scale else diff


def probe_inputs(vocab: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """3 x 6 probe: rows 0 and 1 differ in their last token only, row 2 is right-padded after 4 tokens."""
    row = [(1 + j) % vocab for j in range(6)]
    ids = torch.tensor([row, row[:5] + [(row[5] + 1) % vocab], row[:4] + [0, 0]], device=device)
    mask = torch.ones_like(ids)
    mask[2, 4:] = 0
    return ids, mask


def _describe(model) -> str:
    return f"{type(model).__name__} (model_type {getattr(model.config, 'model_type', '?')!r})"


def _refuse_non_causal(model, logits: torch.Tensor) -> None:
    diff = _mismatch(logits[0, :5], logits[1, :5])
    if diff is not None:
        raise LlmscapeError(
            f"{_describe(model)} is not a causal language model: changing the last token of a probe changed "
            f"the logits at earlier positions (max difference {diff:.3g}). llmscape maps next-token losses of "
            "decoder-only causal LMs; an encoder (e.g. BERT) loaded as a LM head model attends both ways."
        )


@torch.no_grad()
def check_causal(model: torch.nn.Module) -> None:
    """Refuse (``LlmscapeError``) a model whose logits at a position depend on later tokens."""
    if getattr(model.config, "is_encoder_decoder", False) and not type(model).__name__.endswith("ForCausalLM"):
        raise LlmscapeError(f"{_describe(model)} is an encoder-decoder model, not a decoder-only causal LM")
    emb = model.get_input_embeddings()
    ids, mask = probe_inputs(emb.weight.shape[0], emb.weight.device)
    out = model(input_ids=ids, attention_mask=mask, use_cache=False)
    _refuse_non_causal(model, out.logits)


@dataclass(eq=False)
class Architecture:
    """The pieces of a loaded causal LM the engines and the curvature loss run, and what was verified of them.

    ``sequential``: replaying the recorded layer calls reproduces the base model (prefix reuse
    and batched layers are exact); ``head_exact``: ``logits(last hidden state)`` reproduces the
    model's logits; ``embed_is_input``: the hidden states entering layer 0 are the embedding's
    output. Each ``*_reason`` says why a check failed ("" when it passed).
    """

    model: torch.nn.Module
    layout: Layout
    base: torch.nn.Module
    layers: torch.nn.ModuleList | None
    embed: torch.nn.Module
    head: torch.nn.Module
    tail: list[torch.nn.Module] = field(default_factory=list)
    softcap: float | None = None
    sequential: bool = False
    sequential_reason: str = "not verified"
    head_exact: bool = False
    head_reason: str = "not verified"
    embed_is_input: bool = False

    @property
    def n_layers(self) -> int:
        return self.layout.n_layers

    @property
    def head_bias(self) -> torch.Tensor | None:
        return getattr(self.head, "bias", None)

    def cap(self, logits: torch.Tensor) -> torch.Tensor:
        """The final logit softcapping c tanh(z / c) where the model has it, else z unchanged."""
        if self.softcap is None:
            return logits
        return torch.tanh(logits / self.softcap) * self.softcap

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The model's logits from the base model's last hidden state: head, then softcapping."""
        return self.cap(self.head(hidden))

    def run_tail(self, hidden: torch.Tensor) -> torch.Tensor:
        for module in self.tail:
            hidden = module(hidden)
        return hidden

    def run_layers(self, hidden: torch.Tensor, calls: list, start: int, stop: int | None = None) -> torch.Tensor:
        for i in range(start, self.n_layers if stop is None else stop):
            hidden = call_layer(self.layers[i], hidden, calls[i])
        return hidden

    def capture(self, ids: torch.Tensor, mask: torch.Tensor, start: int) -> tuple[torch.Tensor, LayerCalls]:
        """Hidden states entering layer ``start`` and every layer's recorded call, from the base model's forward.

        ``start`` = n_layers: the hidden states leaving the last layer (entering the tail). The
        forward stops as soon as that is recorded (what comes after is not needed).
        """
        hidden, calls, _ = self._record(ids, mask, start, stop=True)
        return hidden, calls

    def _record(self, ids, mask, start: int, stop: bool, model: torch.nn.Module | None = None):
        n = self.n_layers
        calls: list = [None] * n
        entering: dict[int, torch.Tensor] = {}

        def pre_hook(i):
            def hook(module, args, kwargs):
                if args:
                    h, rest, kw, positional = args[0], tuple(args[1:]), dict(kwargs), True
                else:
                    kw = dict(kwargs)
                    h, rest, positional = kw.pop("hidden_states"), (), False
                calls[i] = (rest, kw, positional)
                if i == start:
                    entering[i] = h
                if stop and i == n - 1 and start < n:
                    raise _Stop

            return hook

        def after_last(module, args, out):  # start == n: the hidden states leaving the last layer
            entering[n] = out[0] if isinstance(out, tuple) else out
            if stop:
                raise _Stop

        handles = [
            layer.register_forward_pre_hook(pre_hook(i), with_kwargs=True) for i, layer in enumerate(self.layers)
        ]
        if start >= n:
            handles.append(self.layers[-1].register_forward_hook(after_last))
        out = None
        try:
            runner = self.base if model is None else model
            out = runner(input_ids=ids, attention_mask=mask, use_cache=False)
        except _Stop:
            pass
        finally:
            for h in handles:
                h.remove()
        return entering[start], LayerCalls(calls, ids.shape[0]), out

    def base_hidden(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The base model's last hidden state (after its final norm and any projection)."""
        return self.base(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state


def _find_tail(arch: Architecture, owner: torch.nn.Module, ids, mask) -> tuple[list, dict]:
    """The owner's modules called after the last layer (in order), and one recorded forward's results."""
    order: list[torch.nn.Module] = []
    after = {"flag": False}
    seen: dict = {}

    def child_hook(module, args, out):
        if after["flag"]:
            order.append(module)

    def last_hook(module, args, out):
        after["flag"] = True

    def base_hook(module, args, out):
        seen["last_hidden"] = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]

    handles = [c.register_forward_hook(child_hook) for c in owner.children() if c is not arch.layers]
    handles.append(arch.layers[-1].register_forward_hook(last_hook))
    handles.append(arch.base.register_forward_hook(base_hook))
    try:
        h0, calls, out = arch._record(ids, mask, 0, stop=False, model=arch.model)
    finally:
        for h in handles:
            h.remove()
    seen |= {"h0": h0, "calls": calls, "logits": out.logits}
    if "last_hidden" not in seen:  # the LM called a part of the base model (OPT: model.decoder)
        seen["last_hidden"] = arch.base_hidden(ids, mask)
    return order, seen


@torch.no_grad()
def discover(model: torch.nn.Module, verify: bool = True) -> Architecture:
    """The architecture of a loaded causal LM; with ``verify``, refuses non-causal models and runs the checks.

    ``verify=False`` (a ``meta`` skeleton, nothing to run) finds the modules only: nothing is verified.
    """
    config = model.config
    layout = layout_of(model)
    found = find_layers(model)
    embed, head = model.get_input_embeddings(), model.get_output_embeddings()
    if head is None:
        raise LlmscapeError(f"{_describe(model)} has no output head (get_output_embeddings): not a causal LM")
    base = getattr(model, "base_model", model)
    arch = Architecture(
        model,
        layout,
        base,
        found[1] if found else None,
        embed,
        head,
        softcap=getattr(config, "final_logit_softcapping", None),
    )
    if not verify:
        return arch
    ids, mask = probe_inputs(embed.weight.shape[0], embed.weight.device)
    if arch.layers is None:
        out = model(input_ids=ids, attention_mask=mask, use_cache=False)
        _refuse_non_causal(model, out.logits)
        arch.sequential_reason = f"no ModuleList of num_hidden_layers = {layout.n_layers} modules found"
        last = arch.base_hidden(ids, mask)
        seen = {"logits": out.logits, "last_hidden": last}
    else:
        owner = model.get_submodule(found[0].rpartition(".")[0])
        try:
            arch.tail, seen = _find_tail(arch, owner, ids, mask)
        except Exception as exc:  # a layer that cannot be hooked or called this way: no replay
            out = model(input_ids=ids, attention_mask=mask, use_cache=False)
            _refuse_non_causal(model, out.logits)
            seen = {"logits": out.logits, "last_hidden": arch.base_hidden(ids, mask)}
            arch.sequential_reason = f"recording the layer calls failed ({type(exc).__name__}: {exc})"
        else:
            _refuse_non_causal(model, seen["logits"])
            _verify_replay(arch, seen, ids)
    _verify_head(arch, seen)
    return arch


def _verify_replay(arch: Architecture, seen: dict, ids) -> None:
    want = seen["last_hidden"]
    try:
        h = seen["h0"].repeat(2, *([1] * (seen["h0"].dim() - 1)))
        got = arch.run_tail(arch.run_layers(h, seen["calls"].for_points(2), 0))
    except Exception as exc:  # noqa: BLE001 - any failure means: do not replay
        arch.sequential_reason = f"replaying the recorded layer calls failed ({type(exc).__name__}: {exc})"
        return
    b = want.shape[0]
    diff = _mismatch(got.reshape(2, b, *want.shape[1:]), want.unsqueeze(0).expand(2, *want.shape))
    if diff is None:
        arch.sequential, arch.sequential_reason = True, ""
    else:
        arch.sequential_reason = (
            f"replaying the layers and the tail ({[type(m).__name__ for m in arch.tail]}) differs from the base "
            f"model's forward by {diff:.3g}"
        )
    emb = arch.embed(ids)
    arch.embed_is_input = _mismatch(seen["h0"], emb) is None and bool((seen["h0"] == emb).all())


def _verify_head(arch: Architecture, seen: dict) -> None:
    if not isinstance(arch.head, torch.nn.Linear):
        arch.head_reason = f"the output head is a {type(arch.head).__name__}, not an nn.Linear"
        return
    diff = _mismatch(arch.logits(seen["last_hidden"]), seen["logits"])
    if diff is None:
        arch.head_exact, arch.head_reason = True, ""
    else:
        arch.head_reason = (
            f"the head applied to the base model's last hidden state differs from the model's logits by {diff:.3g} "
            "(a logit transform llmscape does not know)"
        )


def embedding_delta(module: torch.nn.Module, ids: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """module(ids) at weight W + D minus at W: the module run with weight D minus with weight 0.

    Exact for any embedding affine in its weight (nn.Embedding, Gemma's scaled embedding).
    """
    if type(module) is torch.nn.Embedding:
        return F.embedding(ids, direction)
    with_d = functional_call(module, {"weight": direction}, (ids,), tie_weights=False)
    zero = functional_call(module, {"weight": torch.zeros_like(direction)}, (ids,), tie_weights=False)
    return with_d - zero
