"""The checks a config alone decides, run in seconds before any job (Snakefile, at parse time).

The JSON schema (workflow/schemas/config.schema.yaml) fixes types, ranges and defaults;
``schema_errors`` reports its violations as one line per offending key (the value and
the rule it breaks, no schema dump). ``check`` then derives what the schema cannot
(the model name from its source) and refuses what only a look across keys, the file
system or the machine can catch: an invalid regular expression, an empty or inverted
grid, more shards than points, radii beyond a grid, missing text files, ``device: cuda``
without a GPU, study names that collide on a case-insensitive file system, a grid whose
result arrays would not fit in memory. Options that have no effect in the chosen mode
are reported as warnings (``ineffective``), which needs the config as the user wrote it,
before the schema fills in defaults.
"""

from __future__ import annotations

import re
from pathlib import Path

from llmscape.basins import plan as basin_plan
from llmscape.dynamics import settings as dynamics_settings
from llmscape.engine import DEFAULT_KIND, OPTION_DEFAULTS, OPTIONS_OF
from llmscape.errors import LlmscapeError
from llmscape.geometry import settings as geometry_settings
from llmscape.models import resolve_source

# Result arrays of one landscape must fit in this fraction of the machine's memory.
MEMORY_FRACTION = 0.5
# Direction options that only act for method: hessian.
_HESSIAN_ONLY = ("solver", "tol", "max_iter")


def _key(*parts) -> str:
    return "".join(f"[{p!r}]" if isinstance(p, str) else f"[{p}]" for p in parts)


def schema_errors(config: dict, schema: dict) -> list[str]:
    """Every schema violation as ``config['a']['b'] = value: reason`` (deepest first)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    lines = []
    for err in sorted(validator.iter_errors(config), key=lambda e: (-len(e.absolute_path), list(map(str, e.path)))):
        where = "config" + _key(*err.absolute_path)
        shown = repr(err.instance) if len(repr(err.instance)) <= 80 else f"{type(err.instance).__name__} value"
        lines.append(f"{where} = {shown}: {err.message if len(err.message) <= 200 else err.message[:200] + '...'}")
    return lines


def before_defaults(config: dict, schema_path: str | Path) -> list[str]:
    """Refuse a config that breaks the schema (one line per key); else the warnings of ``ineffective``."""
    import yaml

    errors = schema_errors(config, yaml.safe_load(Path(schema_path).read_text()))
    if errors:
        raise LlmscapeError("invalid config:\n  " + "\n  ".join(errors))
    return ineffective(config)


def in_schema_order(config: dict, schema_path: str | Path) -> None:
    """Put, in place, the keys of every settings mapping of a validated config in the schema's order;
    named entries (studies, directions, basins, ...) keep the order the config gives them, which is the
    order of the paper's figures and tables.

    Snakemake reruns a job whose params differ from the last run's as written, key order included, so
    without this the same settings in another order (or a default filled in after the keys a user
    wrote) would rerun every job, the model's conversion first."""
    import yaml

    schema = yaml.safe_load(Path(schema_path).read_text())

    def order(value, node):
        while isinstance(node, dict) and "$ref" in node:  # a JSON pointer into this schema
            target = schema
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            node = target
        if not isinstance(node, dict):
            return value
        if isinstance(value, dict):
            props = node.get("properties", {})
            keys = [k for k in props if k in value] + [k for k in value if k not in props]
            items = [(k, order(value[k], props.get(k, node.get("additionalProperties")))) for k in keys]
            value.clear()
            value.update(items)
        elif isinstance(value, list) and "items" in node:
            value[:] = [order(v, node["items"]) for v in value]
        return value

    order(config, schema)


def model_name(source: str) -> str:
    """A results-directory name derived from a model source (embedded name, directory name, hub id)."""
    base = source.split(":", 1)[1] if source.startswith("embedded:") else Path(source.rstrip("/")).name
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-._")
    if not name:
        raise LlmscapeError(f"cannot derive a name from model.source {source!r}: set model.name")
    return name


def ineffective(raw: dict) -> list[str]:
    """Options the user set that do nothing in the mode they chose (config as written, no defaults)."""
    out = []
    engine = raw.get("engine") or {}
    kind = engine.get("kind", DEFAULT_KIND)
    out += [
        f"engine.{k} has no effect with engine.kind: {kind}"
        for k in engine
        if k in OPTION_DEFAULTS and k not in OPTIONS_OF[kind]
    ]
    if "offload" in engine and not engine.get("stream", False):
        out.append("engine.offload has no effect without engine.stream: true")
    data = raw.get("data") or {}
    if data.get("kind", "prompts") == "prompts":
        out += [f"data.{k} has no effect with data.kind: prompts" for k in ("files", "seq_len") if k in data]
    elif "prompts" in data:
        out.append("data.prompts has no effect with data.kind: files")
    for name, study in (raw.get("studies") or {}).items():
        for dname, d in (study.get("directions") or {}).items():
            if d.get("method", "random") == "random":
                out += [
                    f"studies.{name}.directions.{dname}.{k} has no effect with method: random"
                    for k in _HESSIAN_ONLY
                    if k in d
                ]
        curvature = study.get("curvature") or {}
        if not curvature.get("enabled", False) and len(curvature) > ("enabled" in curvature):
            out.append(f"studies.{name}.curvature options have no effect without enabled: true")
    out += dynamics_settings.ineffective(raw)
    out += geometry_settings.ineffective(raw)
    out += basin_plan.warnings(raw)  # probes, fine-tunes, basins, worst/checkpoint directions (llmscape/basins/plan.py)
    return out


def check(config: dict, cuda_available=None, memory_bytes: int | None = None) -> None:
    """Derive ``model.name`` when absent and refuse what the config alone shows to be wrong.

    ``cuda_available`` and ``memory_bytes`` default to this machine's (tests pass their own).
    """
    model = config["model"]
    resolve_source(model["source"])  # an unknown or incomplete source is a config error
    if not model.get("name"):
        model["name"] = model_name(model["source"])
    problems = []
    data = config["data"]
    if data["kind"] == "files":
        if not data["files"]:
            problems.append("config['data']['files'] is empty: data.kind: files needs at least one text file")
        for i, f in enumerate(data["files"]):
            if not Path(f).is_file():
                problems.append(f"config['data']['files'][{i}] = {f!r}: no such file (relative to {Path.cwd()})")
        if data["chat"]:
            problems.append("config['data']['chat'] = True: the chat template applies to kind: prompts, not files")
    device = str(config["engine"]["device"])
    if device.startswith("cuda"):
        if cuda_available is None:
            import torch

            cuda_available = torch.cuda.is_available()
        if not cuda_available:
            problems.append(f"config['engine']['device'] = {device!r}: no CUDA GPU is available on this machine")
    n_seq = len(data["prompts"]) if data["kind"] == "prompts" else data.get("max_sequences")
    lowered: dict[str, str] = {}
    for name, study in config["studies"].items():
        where = ["studies", name]
        if name.lower() in lowered:
            problems.append(
                f"config['studies'] names {lowered[name.lower()]!r} and {name!r} differ only in case: their result "
                "files would collide on a case-insensitive file system"
            )
        lowered[name.lower()] = name
        for i, pattern in enumerate(study["tensors"]):
            try:
                re.compile(pattern)
            except re.error as exc:
                problems.append(f"config{_key(*where, 'tensors', i)} = {pattern!r}: not a regular expression ({exc})")
        grid = study["grid"]
        g = f"config{_key(*where, 'grid')}"
        if grid["min"] >= grid["max"]:
            problems.append(f"{g}: min = {grid['min']} must be below max = {grid['max']}")
        if grid["points"] < 2:
            problems.append(f"{g}['points'] = {grid['points']}: a landscape and its figures need at least 2 points")
        n_points = grid["points"] ** grid["dims"]
        if study["shards"] > n_points:
            problems.append(
                f"config{_key(*where, 'shards')} = {study['shards']}: more shards than the grid's {n_points} points"
            )
        if grid["dims"] == 2:
            reach = min(abs(grid["min"]), abs(grid["max"]))
            outside = [r for r in config["figures"]["radii"] if r > reach]
            if outside and grid["min"] < 0 < grid["max"]:
                problems.append(
                    f"config['figures']['radii'] = {config['figures']['radii']}: {outside} reach beyond study "
                    f"{name!r}'s grid [{grid['min']}, {grid['max']}]^2 (largest circle inside: radius {reach:g})"
                )
        if n_seq:
            need = n_points * (5 + n_seq) * 8  # loss, token_loss, accuracy, computed + per-sequence, float64
            if memory_bytes is None:
                import psutil

                memory_bytes = psutil.virtual_memory().total
            if need > MEMORY_FRACTION * memory_bytes:
                problems.append(
                    f"{g}: {n_points:,} points x {n_seq} sequences need {need / 2**30:.2f} GiB of result arrays, "
                    f"more than {MEMORY_FRACTION:.0%} of this machine's {memory_bytes / 2**30:.1f} GiB"
                )
    problems += dynamics_settings.problems(config)  # the dynamics section (src/llmscape/dynamics/settings.py)
    problems += geometry_settings.problems(config)  # the geometry section (src/llmscape/geometry/settings.py)
    problems += basin_plan.problems(config)  # probe files parsed, fine-tunes, basins (src/llmscape/basins/plan.py)
    if problems:
        raise LlmscapeError("invalid config:\n  " + "\n  ".join(problems))
