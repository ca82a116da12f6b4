"""Which tensors a landscape perturbs.

A study names tensors by regular expression (``mlp.up_proj``) and decoder layers by
symbolic position (``first``, ``middle``, ``last``, an index, or ``all``), so one config
serves models of any depth. Positions are resolved against the model at run time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from llmscape.errors import LlmscapeError

_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.(.+)$")


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


def layer_index(name: str) -> int | None:
    """The decoder layer a parameter belongs to, or None (embeddings, final norm, head)."""
    m = _LAYER.search(name)
    return int(m.group(1)) if m else None


def select(
    shapes: dict[str, tuple[int, ...]],
    patterns: Iterable[str],
    layer: str | int,
    n_layers: int,
    include_1d: bool = False,
) -> list[str]:
    """Parameter names matching any pattern within the chosen layer (or anywhere for ``all``).

    Within a layer a pattern is searched in the name after ``layers.<i>.``; with
    ``all`` it is searched in the whole name. 1-D tensors (norms, biases) are
    skipped unless ``include_1d``.
    """
    patterns = list(patterns)
    idx = resolve_layer(layer, n_layers)
    chosen = []
    for name, shape in shapes.items():
        if len(shape) < 2 and not include_1d:
            continue
        if idx is None:
            subject = name
        else:
            m = _LAYER.search(name)
            if not m or int(m.group(1)) != idx:
                continue
            subject = m.group(2)
        if any(re.search(p, subject) for p in patterns):
            chosen.append(name)
    if not chosen:
        examples = ", ".join(list(shapes)[:6])
        raise LlmscapeError(
            f"target pattern(s) {patterns} match no tensor in layer {layer!r} "
            f"(include_1d={include_1d}); valid names look like: {examples}"
        )
    return chosen
