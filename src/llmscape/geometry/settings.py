"""The config's ``geometry`` section: what the workflow derives from it, and what it refuses before any job.

Every default lives in the schema (workflow/schemas/config.schema.yaml, ``geometry``); the
functions here read a validated config and never fill in a default of their own.
"""

from __future__ import annotations

import re

from llmscape.errors import LlmscapeError
from llmscape.study import curvature_studies, layer_token, name_clash
from llmscape.train import TrainSpec

STUDY = "geometry"  # results under geometry/, figures/geometry/, tables/geometry/
PARTS = ("exact", "curves", "gradients", "attention")


def enabled(config: dict, part: str | None = None) -> bool:
    g = config.get("geometry") or {}
    if not g.get("enabled"):
        return False
    return part is None or bool(g[part]["enabled"])


def train_spec(exact: dict) -> TrainSpec:
    t = exact["train"]
    return TrainSpec(steps=t["steps"], lr=t["lr"], optimizer=t["optimizer"], batch_size=t["batch_size"],
                     save_every=t["steps"], seed=t["seed"])  # fmt: skip


def curve_layers(config: dict) -> list[str]:
    """The file-name tokens of the curves' layer entries: those of the study named by ``curves.study``."""
    return [layer_token(p) for p in config["studies"][config["geometry"]["curves"]["study"]]["layers"]]


def tiny_target_params(exact: dict) -> int:
    """Parameters the exact Hessian's targets hold in the tiny model (built on the meta device: no memory)."""
    import torch

    from llmscape.geometry.exact import TinySpec, tiny_llama
    from llmscape.targets import select

    with torch.device("meta"):
        model = tiny_llama(8, TinySpec(**exact["model"]))  # the vocabulary is not among the targets' shapes
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    names = select(shapes, exact["tensors"], exact["layer"], exact["model"]["layers"], exact["include_1d"])
    return sum(int(torch.Size(shapes[n]).numel()) for n in names)


def problems(config: dict) -> list[str]:
    """What the config alone shows to be wrong with the geometry section (empty when disabled)."""
    if not enabled(config):
        return []
    g, key, out = config["geometry"], "config['geometry']", []
    e = g["exact"]
    if e["enabled"]:
        m = e["model"]
        if m["hidden"] % m["heads"] or m["heads"] % m["kv_heads"]:
            out.append(
                f"{key}['exact']['model']: heads = {m['heads']} must divide hidden = {m['hidden']} and be a "
                f"multiple of kv_heads = {m['kv_heads']}"
            )
        bad = False
        for i, pattern in enumerate(e["tensors"]):
            try:
                re.compile(pattern)
            except re.error as exc:
                bad = True
                out.append(f"{key}['exact']['tensors'][{i}] = {pattern!r}: not a regular expression ({exc})")
        if not bad and not out:
            try:
                n = tiny_target_params(e)
            except LlmscapeError as exc:
                out.append(f"{key}['exact']: {exc}")
            else:
                if n > e["max_params"]:
                    out.append(
                        f"{key}['exact']: the targets hold {n} parameters of the tiny model, more than max_params = "
                        f"{e['max_params']} (the exact Hessian is n x n)"
                    )
                elif n <= e["k"]:
                    out.append(f"{key}['exact']['k'] = {e['k']}: the targets hold only {n} parameters")
    c = g["curves"]
    if c["enabled"]:
        study = config["studies"].get(c["study"])
        where = f"{key}['curves']['study'] = {c['study']!r}"
        if study is None:
            out.append(f"{where}: no such study (studies: {sorted(config['studies'])})")
        elif c["study"] not in curvature_studies(config) or not study["curvature"]["vectors"]:
            out.append(
                f"{where}: the curves need its spectrum vectors; set studies.{c['study']}.curvature "
                "{enabled: true, vectors: true}"
            )
        if c["min"] >= c["max"]:
            out.append(f"{key}['curves']: min = {c['min']} must be below max = {c['max']}")
    return out + name_clash(config, STUDY, "geometry section's")


def ineffective(raw: dict) -> list[str]:
    """Geometry options that do nothing as written (config before defaults)."""
    g = raw.get("geometry") or {}
    if g and not g.get("enabled", False) and set(g) - {"enabled"}:
        return ["geometry options have no effect without geometry.enabled: true"]
    return [f"geometry.{p} options have no effect with enabled: false"
            for p in PARTS if (g.get(p) or {}).get("enabled") is False and len(g[p]) > 1]  # fmt: skip
