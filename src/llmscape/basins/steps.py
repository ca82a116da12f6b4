"""The basin workflow's jobs as plain functions (workflow/rules/basins.smk calls each from a script).

``prepare_probes`` tokenizes the probe sets and scores them at theta*; ``finetune`` runs a short
fine-tune; ``make_direction`` writes a worst-case or checkpoint direction file (landscape studies
use it too, through llmscape.steps.make_directions); ``search_basin`` finds the radii along a
shard of random directions or along one other direction; ``basin_report`` makes the tables and
the figure; ``plot_capabilities`` draws a landscape's capability grids.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np

from llmscape.errors import LlmscapeError

log = logging.getLogger("llmscape")


def binomial_p_value(hits: int, n: int, chance: float) -> float:
    """One-sided P(X >= hits) for X ~ Binomial(n, chance): how surprising the accuracy is by luck."""
    return float(sum(math.comb(n, k) * chance**k * (1 - chance) ** (n - k) for k in range(hits, n + 1)))


# a probe set is "clearly above chance" at theta* when its accuracy has a one-sided binomial p below this
CLEARLY_ABOVE = 0.01


def prepare_probes(
    model_dir: str | Path, probes_section: dict, names: list[str], outs: list[str | Path], table: str | Path
) -> None:
    """Tokenize each probe set (shared-context rows), score it at theta*, write its file and the table.

    The table (``tables/probes.csv``) has per set its items, chance level and accuracy at theta*
    (with the one-sided binomial p of scoring that well by chance)."""
    import pandas as pd

    from llmscape.models import load_prepared, read_manifest
    from llmscape.probes import column_nll, encode, probe_specs, save_probe_rows

    model, tokenizer = load_prepared(model_dir)
    specs = probe_specs(probes_section)
    rows = []
    for name, out in zip(names, outs, strict=True):
        probe = encode(specs[name], tokenizer, probes_section.get("max_items"))
        nll, _ = column_nll(model, probe.rows)
        centre = {k: float(v[0]) for k, v in probe.score(nll.numpy()[None]).items()}
        hits = round(centre["accuracy"] * probe.n_items)
        p = binomial_p_value(hits, probe.n_items, probe.chance)
        save_probe_rows(out, probe, {"model_sha256": read_manifest(model_dir)["sha256"], "centre": centre})
        log.info(
            "probe set %s: accuracy %.3f at theta* (chance %.3f, p = %.2g), %d items in %d rows of %d tokens",
            name,
            centre["accuracy"],
            probe.chance,
            p,
            probe.n_items,
            len(probe.rows),
            int(probe.rows.attention_mask.sum()),
        )
        if p >= CLEARLY_ABOVE:
            log.warning("probe set %s is not clearly above chance at theta* (p = %.2g): its basin says little", name, p)
        rows.append(
            {
                "probe_set": name,
                "description": specs[name].description,
                "chat": probe.chat,
                "items": probe.n_items,
                "items_in_file": probe.attrs["n_items_in_file"],
                "rows": len(probe.rows),
                "tokens": int(probe.rows.attention_mask.sum()),
                "chance": probe.chance,
                **centre,
                "p_value": p,
                "clearly_above_chance": p < CLEARLY_ABOVE,
                "source": str(specs[name].path),
            }
        )
    Path(table).parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(table, index=False, float_format="%.6g")


def finetune(model_dir: str | Path, job_config: dict, probes_section: dict, out: str | Path) -> None:
    from llmscape.basins.finetune import run_finetune

    run_finetune(model_dir, job_config, probes_section, out)


def _targets(model_dir, job_config) -> tuple[list[str], dict, list[str]]:
    from llmscape.architecture import layout_of_dir
    from llmscape.models import n_layers, read_tensors, tensor_shapes
    from llmscape.targets import select

    c = job_config
    names = select(tensor_shapes(model_dir), c["tensors"], c["layer"], n_layers(model_dir), c["include_1d"])
    return names, read_tensors(model_dir, names), sorted(layout_of_dir(model_dir).transposed)


def _recipe(model_dir, job_config, names, weights) -> dict:
    from llmscape.models import n_layers, read_manifest
    from llmscape.targets import resolve_layer

    return {
        "targets": names,
        "layer": job_config["layer"],
        "layer_index": resolve_layer(job_config["layer"], n_layers(model_dir)),
        "n_parameters": int(sum(w.numel() for w in weights.values())),
        "model_sha256": read_manifest(model_dir)["sha256"],
    }


def make_direction(
    model_dir: str | Path,
    data_path: str | Path,
    job_config: dict,
    out: str | Path,
    probe_paths: dict[str, str] | None = None,
    finetune_runs: dict[str, str] | None = None,
) -> None:
    """A ``method: worst`` or ``method: checkpoint`` direction file (llmscape.basins.directions), for a
    landscape (``job_config['grid']['dims']`` axes: a 2-D one gets a random second axis of the same
    norm, seeded by the direction's seed) or for a basin (one axis)."""
    from llmscape import data as datamod
    from llmscape.basins import directions as bd
    from llmscape.directions import random_directions, save_directions

    names, weights, transposed = _targets(model_dir, job_config)
    d = job_config["direction"]
    recipe = {**d, **_recipe(model_dir, job_config, names, weights)}
    extra = {}
    if d["method"] == "worst":
        from llmscape.models import load_prepared
        from llmscape.probes import load_probe_rows

        model, _ = load_prepared(model_dir, job_config["model"]["dtype"])
        data = datamod.load_eval_set(data_path)
        probe = None if d["objective"] == "loss" else load_probe_rows((probe_paths or {})[d["objective"]])
        objective = bd.Objective(data, probe)
        t0 = time.perf_counter()
        found = bd.worst_direction(
            model, objective, names, weights, d["norm"], d["radius"], d["steps"], d["step_size"], transposed
        )
        axis0 = found.direction
        extra["ascent"] = found.curve
        recipe |= {"objective_name": objective.name, "best_step": found.best_step, "n_gradients": found.n_gradients}
        log.info(
            "worst direction (%s at radius %g): J %.5g at theta*, %.5g at the best step %d of %d, %.1fs",
            objective.name,
            d["radius"],
            found.curve[0],
            found.curve[1 + found.best_step],
            found.best_step,
            d["steps"],
            time.perf_counter() - t0,
        )
    elif d["method"] == "checkpoint":
        from llmscape.directions import normalize

        runs = finetune_runs or {}
        source = d["source"]
        run = runs.get(source.removeprefix("finetune:")) if source.startswith("finetune:") else None
        other, about = bd.checkpoint_tensors(source, names, run)
        delta = bd.checkpoint_delta(weights, other, source, names)
        axis0 = normalize(delta, weights, d["norm"], transposed)
        recipe |= {"checkpoint": about, "delta_norm": bd.norm_of(delta)}
        log.info("checkpoint direction from %s: |theta_other - theta*| = %.5g", source, bd.norm_of(delta))
    else:
        raise LlmscapeError(f"make_direction handles methods worst and checkpoint, not {d['method']!r}")
    directions = [axis0]
    if job_config["grid"]["dims"] == 2:
        directions.append(random_directions(weights, 2, d["seed"], d["norm"], transposed)[1])
    save_directions(out, directions, recipe, extra or None)


def _random_directions(weights, random_config: dict, indices, transposed):
    from llmscape.directions import random_directions

    for i in indices:
        seed = random_config["seed"] + int(i)
        (d,) = random_directions(weights, 1, seed, random_config["norm"], transposed)
        yield f"random-{int(i)}", "random", d, {"index": int(i), "seed": seed, "norm": random_config["norm"]}


def search_basin(
    model_dir: str | Path,
    data_path: str | Path,
    job_config: dict,
    engine_section: dict,
    out: str | Path,
    probe_paths: dict[str, str] | None = None,
    directions_path: str | Path | None = None,
    shard: int = 0,
    n_shards: int = 1,
) -> None:
    """The radii of one layer entry along a shard of its random directions (``directions_path`` None)
    or along the direction in ``directions_path`` (axis 0), for the loss and every capability."""
    from llmscape import data as datamod
    from llmscape.basins.line import search_directions
    from llmscape.basins.search import criteria
    from llmscape.basins.store import save_basin
    from llmscape.directions import load_directions
    from llmscape.engine import split_section
    from llmscape.models import load_prepared, read_manifest
    from llmscape.probes import Evaluation, load_probe_rows
    from llmscape.provenance import versions

    t0 = time.perf_counter()
    names, weights, transposed = _targets(model_dir, job_config)
    options, _ = split_section(engine_section)
    from llmscape.engine import OPTION_DEFAULTS

    model, _ = load_prepared(
        model_dir, options.get("dtype", OPTION_DEFAULTS["dtype"]), options.get("device", OPTION_DEFAULTS["device"])
    )
    data = datamod.load_eval_set(data_path)
    probes = [load_probe_rows(probe_paths[name]) for name in job_config["capabilities"]]
    evaluation = Evaluation(data, probes)
    crit = criteria(job_config["tolerance"], job_config["capabilities"])
    if directions_path is None:
        indices = np.array_split(np.arange(job_config["random"]["n"]), n_shards)[shard]
        directions = _random_directions(weights, job_config["random"], indices, transposed)
        use_prior = True
        recipe = None
    else:
        loaded, dattrs = load_directions(directions_path)
        recipe = dattrs["recipe"]
        info = {k: recipe[k] for k in ("method", "norm", "seed", "objective", "radius", "source") if k in recipe}
        directions = [(recipe["name"], recipe["method"], loaded[0], info)]
        use_prior = False
    target_loss = None
    if job_config["check"]["enabled"]:
        from llmscape.curvature import TargetLoss

        target_loss = TargetLoss(model, data, names)
    centre, results, engine = search_directions(
        model,
        evaluation,
        directions,
        crit,
        job_config["search"],
        options,
        target_loss,
        job_config["check"],
        use_prior,
    )
    if directions_path is not None:  # a worst direction's ascent curve travels with its search
        from llmscape import h5io

        with h5io.read(directions_path, "directions") as f:
            if "ascent" in f:
                results[0].ascent = f["ascent"][...]
    manifest = read_manifest(model_dir)
    attrs = {
        "provenance": {
            "config": job_config,
            "model": manifest,
            "model_sha256": manifest["sha256"],
            "probes": {p.name: p.attrs.get("source_sha256") for p in probes},
            "directions_recipe": recipe,
            "engine": engine,
            "versions": versions(),
        },
        "target": _recipe(model_dir, job_config, names, weights),
        "criteria": [vars(c) for c in crit],
        "centre": centre,
        "shard": [shard, n_shards],
        "wall_time_s": time.perf_counter() - t0,
    }
    save_basin(out, results, attrs)
    log.info("%d direction(s) in %.1fs", len(results), time.perf_counter() - t0)


def basin_report(
    searches: list[str | Path],
    job_config: dict,
    radii_csv: str | Path,
    summary_csv: str | Path,
    png: str | Path,
    pdf: str | Path,
) -> None:
    """The basin study's tables (every radius; the distribution per layer entry and metric, with
    bootstrap CI, beside the other directions' radii and the ratio) and its figure."""
    from llmscape.basins.report import plot_basins, radii_table, summary_table
    from llmscape.basins.store import load_basin

    loaded = [load_basin(p) for p in searches]
    radii = radii_table(loaded)
    summary = summary_table(radii, loaded, job_config)
    for path, table in ((radii_csv, radii), (summary_csv, summary)):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(path, index=False, float_format="%.6g")
    plot_basins(loaded, summary, job_config, png, pdf)


def plot_capabilities(landscape: str | Path, png: str | Path, pdf: str | Path) -> None:
    """A landscape's loss and capability grids, each on its own and all normalized in one panel."""
    from llmscape.basins.report import plot_capability_landscape
    from llmscape.steps import landscape_title
    from llmscape.store import Landscape

    ls = Landscape.load(landscape)
    plot_capability_landscape(ls, landscape_title(ls), png, pdf)
