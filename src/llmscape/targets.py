"""Which tensors a landscape perturbs.

A study names tensors by regular expression (``mlp.up_proj``) and decoder layers by
symbolic position (``first``, ``middle``, ``last``, an index, or ``all``), so one config
serves models of any depth. Positions are resolved against the model at run time.

Where the decoder layers are is found from the names (llmscape.architecture.layer_prefix):
``model.layers.<i>.`` (Llama, Qwen, Mistral, Gemma, Phi, OLMo), ``transformer.h.<i>.``
(GPT-2), ``gpt_neox.layers.<i>.``, ``model.decoder.layers.<i>.`` (OPT), ...
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from llmscape.architecture import layer_prefix, within_layer
from llmscape.errors import LlmscapeError


def resolve_layer(position: str | int, n_layers: int) -> int | None:
    """A symbolic layer position as an index; None for ``all``."""
    named = {"first": 0, "middle": n_layers // 2, "last": n_layers - 1}
    pos = str(position)
    if pos == "all":
        return None
    if pos in named:
        return named[pos]
    try:
        idx = int(pos)
    except ValueError:
        raise LlmscapeError(f"layer position must be first/middle/last/all or an integer, got {position!r}") from None
    if not -n_layers <= idx < n_layers:
        raise LlmscapeError(f"layer {idx} out of range for a model with {n_layers} decoder layers")
    return idx % n_layers


def layer_index(name: str, prefix: str | None = None) -> int | None:
    """The decoder layer a parameter belongs to, or None (embeddings, final norm, head).

    ``prefix``: the layers' name prefix (``transformer.h``); without it, the first numbered
    component of the name.
    """
    s = within_layer(name, prefix)
    return None if s is None else s[0]


def select(
    shapes: dict[str, tuple[int, ...]],
    patterns: Iterable[str],
    layer: str | int,
    n_layers: int,
    include_1d: bool = False,
    prefix: str | None = None,
) -> list[str]:
    """Parameter names matching any pattern within the chosen layer (or anywhere for ``all``).

    Within a layer a pattern is searched in the name after ``<prefix>.<i>.``; with
    ``all`` it is searched in the whole name. 1-D tensors (norms, biases) are
    skipped unless ``include_1d``. ``prefix`` (``model.layers``, ``transformer.h``) is
    found from the names when not given.
    """
    patterns = list(patterns)
    idx = resolve_layer(layer, n_layers)
    if idx is not None and prefix is None:
        prefix = layer_prefix(shapes, n_layers)
        if prefix is None:
            examples = ", ".join(list(shapes)[:6])
            raise LlmscapeError(
                f"cannot tell where the {n_layers} decoder layers are: no name prefix is followed by every index "
                f"0..{n_layers - 1}; names look like: {examples}"
            )
    chosen = []
    for name, shape in shapes.items():
        if len(shape) < 2 and not include_1d:
            continue
        if idx is None:
            subject = name
        else:
            within = within_layer(name, prefix)
            if within is None or within[0] != idx:
                continue
            subject = within[1]
        if any(re.search(p, subject) for p in patterns):
            chosen.append(name)
    if not chosen:
        examples = ", ".join(list(shapes)[:6])
        raise LlmscapeError(
            f"target pattern(s) {patterns} match no tensor in layer {layer!r} "
            f"(include_1d={include_1d}); valid names look like: {examples}"
        )
    return chosen
