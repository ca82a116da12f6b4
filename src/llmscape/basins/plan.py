"""What a config's ``probes``, ``finetune`` and ``basins`` sections expand into, and what in them
is wrong, decided from the config alone (llmscape.config.check calls ``problems``)."""

from __future__ import annotations

import re
from pathlib import Path

from llmscape.study import layer_position, layer_token

FINETUNE_PREFIX = "finetune:"
PROBES_PREFIX = "probes:"
# Direction keys that act only for one method (their defaults fill every direction).
ONLY_FOR = {"worst": ("objective", "radius", "steps", "step_size"), "checkpoint": ("source",)}


def _key(*parts) -> str:
    return "config" + "".join(f"[{p!r}]" if isinstance(p, str) else f"[{p}]" for p in parts)


def _probe_name(spec: str) -> str | None:
    return spec[len(PROBES_PREFIX) :] if spec.startswith(PROBES_PREFIX) else None


def direction_probes(direction: dict) -> list[str]:
    """Probe sets a direction needs: a worst direction's capability objective."""
    if direction.get("method") == "worst" and direction.get("objective", "loss") != "loss":
        return [direction["objective"]]
    return []


def direction_finetunes(direction: dict) -> list[str]:
    """Fine-tune runs a direction needs: a checkpoint direction's ``finetune:<name>`` source."""
    source = direction.get("source") or ""
    if direction.get("method") == "checkpoint" and source.startswith(FINETUNE_PREFIX):
        return [source[len(FINETUNE_PREFIX) :]]
    return []


def used_probes(config: dict) -> list[str]:
    """Every probe set the config uses (capabilities, worst objectives, fine-tune data), in first-use order."""
    names: list[str] = []
    for s in config.get("studies", {}).values():
        names += s.get("capabilities", [])
        for d in s.get("directions", {}).values():
            names += direction_probes(d)
    for b in config.get("basins", {}).values():
        names += b.get("capabilities", [])
        for d in b.get("directions", {}).values():
            names += direction_probes(d)
    for f in config.get("finetune", {}).values():
        name = _probe_name(f.get("data", "data"))
        if name:
            names.append(name)
    return list(dict.fromkeys(names))


def basin_layers(config: dict, basin: str) -> list[str]:
    return [layer_token(p) for p in config["basins"][basin]["layers"]]


def basin_parts(config: dict, basin: str) -> list[str]:
    """The search jobs of one layer entry: ``random-<k>-of-<K>`` shards, then one per other direction."""
    b = config["basins"][basin]
    k = b["shards"]
    return [f"random-{i}-of-{k}" for i in range(k)] + list(b["directions"])


def _target_config(config: dict, basin: str, layer: str) -> dict:
    b = config["basins"][basin]
    return {
        "model": config["model"],
        "data": config["data"],
        "basin": basin,
        "layer": layer_position(layer),
        "tensors": b["tensors"],
        "include_1d": b["include_1d"],
    }


def basin_config(config: dict, basin: str, layer: str, part: str | None = None) -> dict:
    """Everything that determines one basin job's values (its provenance) and nothing more, so that adding
    a direction or changing the bootstrap reruns only the jobs it changes; ``layer`` a file-name token.
    ``part``: None (the report: the whole section), ``random-<k>-of-<n>`` (a search over a shard of the
    random directions) or a direction's name (the search along it)."""
    b = config["basins"][basin]
    out = _target_config(config, basin, layer) | {
        "capabilities": b["capabilities"],
        "probes": {"max_items": config["probes"]["max_items"]},
        "tolerance": b["tolerance"],
        "search": b["search"],
        "check": b["check"],
    }
    if part is None:
        return out | {k: b[k] for k in ("random", "shards", "directions", "bootstrap")}
    if part.startswith("random-"):
        return out | {"random": b["random"], "shards": b["shards"]}
    return out | {"direction": {"name": part, **b["directions"][part]}}


def basin_direction_config(config: dict, basin: str, layer: str, direction: str) -> dict:
    """What determines one basin direction file: its targets and the direction's own section."""
    return _target_config(config, basin, layer) | {
        "direction": {"name": direction, **config["basins"][basin]["directions"][direction]},
        "grid": {"dims": 1},
    }


def engine_section(config: dict, basin: str) -> dict:
    """The engine section a basin's jobs run with: the top-level one, with the basin's overrides."""
    return {**config["engine"], **config["basins"][basin].get("engine", {})}


def finetune_config(config: dict, name: str) -> dict:
    """A fine-tune's job config: its section, the model, and the config's evaluation data (``data_config``)."""
    return {"model": config["model"], "data_config": config["data"], "name": name, **config["finetune"][name]}


def _probe_set_problems(config: dict, names: list[str]) -> list[str]:
    from llmscape.errors import LlmscapeError
    from llmscape.probes import probe_specs, read_items

    specs = probe_specs(config.get("probes"))
    out = []
    for name in names:
        if name not in specs:
            continue  # reported where it is named
        path = specs[name].path
        if not Path(path).is_file():
            out.append(f"config['probes']['sets'][{name!r}]['file'] = {str(path)!r}: no such file")
            continue
        try:
            read_items(path)
        except LlmscapeError as exc:
            out.append(str(exc))
    return out


def problems(config: dict) -> list[str]:
    """Everything wrong in the probes, finetune and basins sections that the config alone shows."""
    from llmscape.engine import OPTION_DEFAULTS
    from llmscape.errors import LlmscapeError
    from llmscape.models import resolve_source
    from llmscape.probes import probe_specs

    out: list[str] = []
    try:
        known = set(probe_specs(config.get("probes")))
    except LlmscapeError as exc:
        return [f"config['probes']['sets']: {exc}"]
    finetunes = set(config.get("finetune", {}))

    def probe(name: str, *where) -> None:
        if name not in known:
            out.append(f"{_key(*where)} = {name!r}: no such probe set; known: {', '.join(sorted(known))}")

    def direction(d: dict, *where) -> None:
        for name in direction_probes(d):
            probe(name, *where, "objective")
        if d.get("method") == "checkpoint":
            source = d.get("source")
            if not source:
                out.append(f"{_key(*where)}: method checkpoint needs a source (finetune:<name>, directory, hub id)")
            elif source.startswith(FINETUNE_PREFIX):
                if source[len(FINETUNE_PREFIX) :] not in finetunes:
                    have = ", ".join(sorted(finetunes)) or "none"
                    out.append(f"{_key(*where, 'source')} = {source!r}: no such entry in config['finetune'] ({have})")
            else:
                try:
                    resolve_source(source)
                except LlmscapeError as exc:
                    out.append(f"{_key(*where, 'source')} = {source!r}: {exc}")

    for sname, s in config.get("studies", {}).items():
        for i, name in enumerate(s.get("capabilities", [])):
            probe(name, "studies", sname, "capabilities", i)
        for dname, d in s.get("directions", {}).items():
            direction(d, "studies", sname, "directions", dname)
    for fname, f in config.get("finetune", {}).items():
        data = f["data"]
        if data != "data" and _probe_name(data) is None:
            out.append(f"{_key('finetune', fname, 'data')} = {data!r}: must be 'data' or 'probes:<set>'")
        elif _probe_name(data) is not None:
            probe(_probe_name(data), "finetune", fname, "data")
        for i, pattern in enumerate(f["tensors"]):
            try:
                re.compile(pattern)
            except re.error as exc:
                out.append(f"{_key('finetune', fname, 'tensors', i)} = {pattern!r}: not a regular expression ({exc})")
    for bname, b in config.get("basins", {}).items():
        where = ("basins", bname)
        for i, pattern in enumerate(b["tensors"]):
            try:
                re.compile(pattern)
            except re.error as exc:
                out.append(f"{_key(*where, 'tensors', i)} = {pattern!r}: not a regular expression ({exc})")
        for i, name in enumerate(b["capabilities"]):
            probe(name, *where, "capabilities", i)
        for dname, d in b["directions"].items():
            if dname == "random":
                out.append(
                    f"{_key(*where, 'directions', 'random')}: the name 'random' is taken by the random directions"
                )
            elif d["method"] == "random":
                from_ = _key(*where, "random")
                out.append(f"{_key(*where, 'directions', dname, 'method')} = 'random': random ones come from {from_}")
            direction(d, *where, "directions", dname)
        for metric, value in b["tolerance"].items():
            if not value > 0:
                unit = "nats of loss rise" if metric == "loss" else "accuracy drop (a fraction)"
                why = f"a tolerance must be > 0 ({unit} that still counts as inside the basin)"
                out.append(f"{_key(*where, 'tolerance', metric)} = {value}: {why}")
        if not b["tolerance"]["accuracy"] < 1:
            value = b["tolerance"]["accuracy"]
            out.append(f"{_key(*where, 'tolerance', 'accuracy')} = {value}: a drop of 1 or more never leaves the basin")
        s = b["search"]
        if not 0 < s["precision"] < 1:
            out.append(
                f"{_key(*where, 'search', 'precision')} = {s['precision']}: must be in (0, 1) (relative to the radius)"
            )
        if not s["max_radius"] > 0:
            out.append(f"{_key(*where, 'search', 'max_radius')} = {s['max_radius']}: must be > 0")
        elif not 0 < s["start"] <= s["max_radius"]:
            out.append(
                f"{_key(*where, 'search', 'start')} = {s['start']}: must be in (0, max_radius = {s['max_radius']}]"
            )
        if b["shards"] > b["random"]["n"]:
            out.append(
                f"{_key(*where, 'shards')} = {b['shards']}: more shards than the {b['random']['n']} random directions"
            )
        unknown = sorted(set(b.get("engine", {})) - set(OPTION_DEFAULTS) - {"kind"})
        if unknown:
            out.append(
                f"{_key(*where, 'engine')}: unknown engine option(s) {unknown}; known: {sorted(OPTION_DEFAULTS)}"
            )
    out += _probe_set_problems(config, used_probes(config))
    return out


def warnings(raw: dict) -> list[str]:
    """Options that do nothing as written (the config before defaults)."""
    out = []
    groups = [(f"studies.{n}", s.get("directions") or {}) for n, s in (raw.get("studies") or {}).items()]
    groups += [(f"basins.{n}", b.get("directions") or {}) for n, b in (raw.get("basins") or {}).items()]
    for where, directions in groups:
        for dname, d in directions.items():
            method = d.get("method", "random")
            for owner, keys in ONLY_FOR.items():
                if method != owner:
                    out += [
                        f"{where}.directions.{dname}.{k} has no effect with method: {method}" for k in keys if k in d
                    ]
    for bname, b in (raw.get("basins") or {}).items():
        norm = (b.get("random") or {}).get("norm", "filter")
        for dname, d in (b.get("directions") or {}).items():
            if d.get("norm", "filter") != norm:
                out.append(
                    f"basins.{bname}.directions.{dname}.norm = {d.get('norm', 'filter')!r} differs from the random "
                    f"directions' {norm!r}: their radii are in different units"
                )
    return out
