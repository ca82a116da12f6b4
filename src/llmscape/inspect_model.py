"""Look at a model before computing anything: its decoder layers, tensors, shapes and counts.

    llmscape-inspect SOURCE [--config CONFIG]

SOURCE is anything ``model.source`` takes (``embedded:<name>``, a local directory with
safetensors, a Hugging Face id) or a prepared directory (``results/<model>/model``). No
weight is read: a prepared directory's tensor names and shapes come from the safetensors
headers, any other source's from its config, built on the ``meta`` device. With a config,
every study's layer entries are resolved and the tensors each one perturbs listed, with
their parameter count: the names a study's ``tensors`` and ``layers`` select are the
names printed here.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

from llmscape.architecture import layer_prefix, within_layer
from llmscape.errors import LlmscapeError


def model_tensors(source: str) -> tuple[dict[str, tuple[int, ...]], int, str]:
    """(tensor shapes by name, decoder layers, architecture) of a source or prepared directory."""
    from transformers import AutoConfig

    from llmscape.models import n_layers, resolve_source, tensor_shapes

    path = Path(source)
    if (path / "manifest.json").is_file():  # a prepared directory: the names the workflow selects from
        architecture = AutoConfig.from_pretrained(path).architectures[0]
        return tensor_shapes(path), n_layers(path), architecture
    resolved = resolve_source(source)
    kwargs = {"gguf_file": resolved["gguf_file"]} if resolved["kind"] == "gguf" else {}
    try:
        config = AutoConfig.from_pretrained(resolved["path"], **kwargs)
    except OSError as exc:
        raise LlmscapeError(f"cannot read the config of {source!r}: {exc}") from exc
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config)
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}  # a tied head once, as saved
    return shapes, int(config.num_hidden_layers), type(model).__name__


def _table(rows: list[tuple[str, tuple[int, ...]]], indent: str = "  ") -> list[str]:
    width = max((len(n) for n, _ in rows), default=0)
    return [f"{indent}{n:<{width}}  {str(list(s)):<16} {math.prod(s):>13,}" for n, s in rows]


def describe(source: str, config: dict | None = None) -> str:
    """The text ``llmscape-inspect`` prints."""
    from llmscape.targets import resolve_layer, select

    shapes, n_layers, architecture = model_tensors(source)
    prefix = layer_prefix(shapes, n_layers)
    total = sum(math.prod(s) for s in shapes.values())
    lines = [f"{source}: {architecture}, {total:,} parameters, {n_layers} decoder layers"]
    inside = {n: within_layer(n, prefix) for n in shapes} if prefix else {}
    if prefix:
        first = [(hit[1], shapes[n]) for n, hit in inside.items() if hit and hit[0] == 0]
        per_layer = sum(math.prod(s) for _, s in first)
        lines += [
            f"decoder layers: {prefix}.0 .. {prefix}.{n_layers - 1}, {per_layer:,} parameters each "
            f"(layer 0 shown; every layer has the same names)",
            *_table(first),
        ]
    else:
        lines.append(f"decoder layers: no name prefix is followed by every index 0..{n_layers - 1}")
    outside = [(n, s) for n, s in shapes.items() if not inside.get(n)]
    lines += ["outside the decoder layers:", *_table(outside)]
    if not any("lm_head" in n for n in shapes):
        lines.append("  (no separate head tensor: the head is tied to the input embedding)")
    for study, s in (config or {}).get("studies", {}).items():
        lines.append(f"study {study!r}: tensors {s['tensors']}, include_1d {s.get('include_1d', False)}")
        for layer in s.get("layers", ["first", "middle", "last"]):
            try:
                names = select(shapes, s["tensors"], layer, n_layers, s.get("include_1d", False), prefix)
            except LlmscapeError as exc:
                lines.append(f"  {layer}: {exc}")
                continue
            index = resolve_layer(layer, n_layers)
            where = "all layers" if index is None else f"layer {index}"
            count = sum(math.prod(shapes[n]) for n in names)
            lines.append(f"  {layer} ({where}): {len(names)} tensors, {count:,} parameters")
            lines += _table([(n, shapes[n]) for n in names], indent="    ")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llmscape-inspect", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "source", help="embedded:<name>, a model directory, a Hugging Face id, or results/<model>/model"
    )
    parser.add_argument("--config", help="a config file: show which tensors each study's layer entries select")
    parser.add_argument("--grep", help="only tensor lines matching this regular expression")
    args = parser.parse_args(argv)
    config = None
    if args.config:
        import yaml

        config = yaml.safe_load(Path(args.config).read_text())
    try:
        text = describe(args.source, config)
    except LlmscapeError as exc:
        print(f"llmscape-inspect: {exc}", file=sys.stderr)
        return 1
    if args.grep:
        pattern = re.compile(args.grep)
        text = "\n".join(line for line in text.splitlines() if not line.startswith("  ") or pattern.search(line))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
