"""Workflow steps as plain functions: paths and config in, files out.

Each Snakemake script calls exactly one of these, so every step can be run and
tested without Snakemake.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from llmscape import data as datamod
from llmscape import grid
from llmscape.directions import directions_sha256, load_directions, normalize, random_directions, save_directions
from llmscape.models import load_prepared, n_layers, read_manifest, read_tensors, tensor_shapes
from llmscape.provenance import versions
from llmscape.store import Landscape, merge
from llmscape.surface import compute_shard
from llmscape.targets import resolve_layer, select

log = logging.getLogger("llmscape")


def prepare_data(model_dir: str | Path, data_config: dict, out: str | Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    texts, templated = datamod.texts_for(data_config, tokenizer)
    evalset = datamod.tokenize(
        texts, tokenizer, data_config.get("seq_len"), data_config.get("max_sequences"), templated
    )
    first = evalset.input_ids[:, 0]
    attrs = {
        "spec": data_config,
        "model_sha256": read_manifest(model_dir)["sha256"],
        "bos_token_id": -1 if tokenizer.bos_token_id is None else tokenizer.bos_token_id,
        "starts_with_bos": bool(tokenizer.bos_token_id is not None and (first == tokenizer.bos_token_id).all()),
    }
    datamod.save_eval_set(out, evalset, attrs)
    log.info("%d sequences, %d predicted tokens", len(evalset), int(evalset.n_tokens.sum()))


def target_names(model_dir: str | Path, job_config: dict) -> list[str]:
    """The parameter names a job perturbs, resolved against this model.

    ``job_config`` here and below is the resolved config of one landscape or one layer
    entry's spectrum (llmscape.study.landscape_config / curvature_config)."""
    c = job_config
    return select(tensor_shapes(model_dir), c["tensors"], c["layer"], n_layers(model_dir), c["include_1d"])


def make_directions(
    model_dir: str | Path,
    data_path: str | Path,
    job_config: dict,
    out: str | Path,
    probe_paths: dict[str, str] | None = None,
    finetune_runs: dict[str, str] | None = None,
) -> None:
    """Random or Hessian directions over the landscape's targets, normalized per ``norm``; worst-case and
    checkpoint directions by llmscape.basins.steps.make_direction (``probe_paths``: a capability
    objective's probe file; ``finetune_runs``: the run of a ``finetune:<name>`` source)."""
    from llmscape.architecture import layout_of_dir

    if job_config["direction"]["method"] in ("worst", "checkpoint"):
        from llmscape.basins.steps import make_direction

        return make_direction(model_dir, data_path, job_config, out, probe_paths, finetune_runs)

    names = target_names(model_dir, job_config)
    weights = read_tensors(model_dir, names)
    d = job_config["direction"]
    n_axes = job_config["grid"]["dims"]
    recipe = {
        **d,
        "targets": names,
        "layer": job_config["layer"],
        "layer_index": resolve_layer(job_config["layer"], n_layers(model_dir)),
        "n_parameters": int(sum(w.numel() for w in weights.values())),
        "model_sha256": read_manifest(model_dir)["sha256"],
    }
    extra = None
    transposed = layout_of_dir(model_dir).transposed  # Conv1D weights: filters are columns
    if d["method"] == "hessian":
        from llmscape.curvature import hessian_directions

        model, _ = load_prepared(model_dir, job_config["model"]["dtype"])
        found = hessian_directions(
            model,
            datamod.load_eval_set(data_path),
            names,
            n_axes,
            method=d["solver"],
            seed=d["seed"],
            tol=d["tol"],
            max_iter=d["max_iter"],
        )
        directions = [normalize(v, weights, d["norm"], transposed) for v in found.directions]
        recipe |= found.recipe()
        extra = found.extra()
        log.info("Hessian eigenvalues %s (%d HVPs)", np.array2string(found.eigenvalues, precision=4), found.n_hvp)
    else:
        directions = random_directions(weights, n_axes, d["seed"], d["norm"], transposed)
    save_directions(out, directions, recipe, extra)
    log.info("%s directions over %d tensors (%d parameters)", d["method"], len(names), recipe["n_parameters"])


def compute_surface(
    model_dir: str | Path,
    data_path: str | Path,
    directions_path: str | Path,
    job_config: dict,
    engine_section: dict,
    out: str | Path,
    shard: int = 0,
    n_shards: int = 1,
    label: str = "landscape",
    probe_paths: dict[str, str] | None = None,
) -> Landscape:
    """One shard of a landscape; with ``probe_paths`` (the study's capabilities, llmscape.probes) every
    point also scores each probe set, in the same engine pass as the loss."""
    from llmscape.engine import build_engine, split_section
    from llmscape.probes import Evaluation, load_probe_rows

    log.info("%s", surface_estimate(model_dir, data_path, job_config, engine_section).describe())
    evalset = datamod.load_eval_set(data_path)
    directions, dattrs = load_directions(directions_path)
    manifest = read_manifest(model_dir)
    options, job = split_section(engine_section)  # engine options | job keys (threads, checkpoint_s)
    probes = [load_probe_rows(probe_paths[name]) for name in job_config.get("capabilities", [])]
    evaluation = Evaluation(evalset, probes)  # the loss's rows, then every probe set's
    engine = build_engine(options, model_dir, evaluation.evalset, directions)
    provenance = {
        "config": job_config,
        "model": manifest,
        "model_sha256": manifest["sha256"],
        "directions_sha256": directions_sha256(directions),
        "directions_recipe": dattrs["recipe"],
        "data_tokens_sha256": _evalset_hash(evalset),
        "engine": engine.describe(),  # what the engine runs with, defaults resolved
        "versions": versions(),
    }
    if probes:
        provenance["probes"] = {p.name: p.attrs["source_sha256"] for p in probes}
    return compute_shard(
        engine,
        grid.axes(job_config["grid"]),
        evalset.n_tokens,
        out,
        provenance,
        shard=shard,
        n_shards=n_shards,
        checkpoint_s=job["checkpoint_s"],
        label=label,
        scorer=evaluation.metrics,
        extra=tuple(evaluation.names),
    )


def _evalset_hash(evalset: datamod.EvalSet) -> str:
    h = hashlib.sha256(evalset.input_ids.numpy().tobytes())
    h.update(evalset.attention_mask.numpy().tobytes())
    return h.hexdigest()


def merge_shards(shards: list[str | Path], out: str | Path) -> None:
    landscape = merge(shards)
    landscape.save(out)
    log.info(
        "merged %d shard(s): %d points, wall time %.1fs",
        len(shards),
        landscape.computed.size,
        landscape.attrs["wall_time_s"],
    )


def landscape_title(ls: Landscape) -> str:
    """Model, study, layer entry and direction of a landscape, for figure titles."""
    p = ls.attrs["provenance"]
    recipe = p["directions_recipe"]
    where = "all layers" if recipe["layer_index"] is None else f"layer {recipe['layer_index']}"
    model, study = p["config"]["model"]["name"], p["config"]["study"]
    return f"{model} {study}: {recipe['layer']} ({where}), {recipe['name']} ({recipe['method']}, {recipe['norm']})"


def render_landscape(landscape: str | Path, png: str | Path, pdf: str | Path, html: str | Path, clip: float) -> None:
    from llmscape.plots import plot_landscape, plotly_landscape

    ls = Landscape.load(landscape)
    title = landscape_title(ls)
    plot_landscape(ls, title, png, pdf, clip)
    plotly_landscape(ls, title, html)


def identify(ls: Landscape) -> dict:
    """The columns that say which landscape a summary row is about."""
    p = ls.attrs["provenance"]
    recipe = p["directions_recipe"]
    return {
        "model": p["config"]["model"]["name"],
        "study": p["config"]["study"],
        "layer": recipe["layer"],
        "layer_index": recipe["layer_index"],
        "direction": recipe["name"],
        "method": recipe["method"],
        "norm": recipe["norm"],
        "n_parameters": recipe["n_parameters"],
        "targets": ";".join(recipe["targets"]),
        "grid_points": int(ls.loss.size),
        "wall_time_s": float(ls.attrs["wall_time_s"]),
    }


def compare_study(
    landscapes: list[str | Path],
    png: str | Path,
    pdf: str | Path,
    csv: str | Path,
    clip: float,
    radii: list[float],
    shared_scale: bool = False,
) -> None:
    """One comparison figure (a column per layer, a row per direction) and the summary CSV."""
    from llmscape.plots import plot_comparison
    from llmscape.summary import summary_table

    loaded = [Landscape.load(p) for p in landscapes]
    idents = [identify(ls) for ls in loaded]
    layers = list(dict.fromkeys(i["layer"] for i in idents))
    directions = list(dict.fromkeys(i["direction"] for i in idents))
    order = sorted(
        range(len(loaded)), key=lambda k: (directions.index(idents[k]["direction"]), layers.index(idents[k]["layer"]))
    )
    panels = [(f"{idents[k]['layer']} · {idents[k]['direction']}", loaded[k]) for k in order]
    plot_comparison(panels, png, pdf, clip, n_cols=len(layers), shared_scale=shared_scale)
    summary_table(list(zip(idents, loaded, strict=True)), radii).to_csv(csv, index=False, float_format="%.6g")


def compute_curvature(model_dir: str | Path, data_path: str | Path, job_config: dict, out: str | Path) -> None:
    """Hessian spectrum (top-k, lambda_min, trace, density) of the loss on one layer entry's targets."""
    from llmscape.curvature import save_spectrum, section_spectrum

    log.info("%s", hessian_estimate(model_dir, data_path, job_config).describe())
    names = target_names(model_dir, job_config)
    manifest = read_manifest(model_dir)
    c = job_config["curvature"]
    model, _ = load_prepared(model_dir, job_config["model"]["dtype"])
    spectrum = section_spectrum(model, datamod.load_eval_set(data_path), names, c)
    provenance = {
        "study": job_config["study"],
        "layer": job_config["layer"],
        "layer_index": resolve_layer(job_config["layer"], n_layers(model_dir)),
        "model": manifest,
        "model_sha256": manifest["sha256"],
        "config": job_config,
        "versions": versions(),
    }
    save_spectrum(out, spectrum, provenance)
    log.info(
        "top eigenvalues %s, trace %.4g +- %.2g, %d HVPs in %.1fs",
        spectrum.eigenvalues,
        spectrum.trace.trace,
        spectrum.trace.se,
        spectrum.n_hvp,
        spectrum.seconds,
    )


def plot_curvature(spectra: list[str | Path], png: str | Path, pdf: str | Path) -> None:
    """A study's per-layer curvature in one four-panel figure."""
    from llmscape.curvature import load_spectrum
    from llmscape.plots import plot_spectra

    loaded = [load_spectrum(p) for p in spectra]
    plot_spectra([(f"{prov['layer']} (L{prov['layer_index']})", s) for s, prov in loaded], png, pdf)


def curvature_table(spectra: list[str | Path], csv: str | Path) -> None:
    """One row per spectrum file of the model (all studies), with the resolved layer index."""
    from llmscape.curvature import spectra_table

    spectra_table(spectra).to_csv(csv, index=False, float_format="%.6g")


def weight_spectra(model_dir: str | Path, png: str | Path, pdf: str | Path, csv: str | Path) -> None:
    """Singular values and condition numbers of every layer's attention and MLP matrices."""
    from llmscape.architecture import layer_prefix
    from llmscape.plots import plot_weight_spectra
    from llmscape.weight_spectra import layer_matrices, weight_spectra_table
    from llmscape.weight_spectra import weight_spectra as spectra_of

    shapes = tensor_shapes(model_dir)
    prefix = layer_prefix(shapes, n_layers(model_dir))  # the decoder layers' 2-D weights, any family
    table = weight_spectra_table(spectra_of(read_tensors(model_dir, layer_matrices(shapes, prefix)), prefix), prefix)
    table.to_csv(csv, index=False, float_format="%.6g")
    plot_weight_spectra(table, png, pdf)


def render_paper(inputs: dict, config: dict, out: str | Path | dict) -> None:
    """The write-up from the paper rule's named inputs (workflow/rules/common.smk, paper_inputs):
    ``template``, ``model``, ``data``, ``claims`` (the claims table), ``weights_csv`` and ``weights_png``
    (when weight spectra are enabled), ``curvature_table`` (when a study has curvature) and, per study,
    ``<study>.table``, ``.compare``, ``.landscapes``, ``.pngs``, ``.htmls`` (one each per landscape, in
    the same order) and ``.curvature`` (its curvature figure); ``dynamics.*`` and ``_basin.*`` for those
    sections. ``out``: {"html": index.html, "explorer": explorer.html, "provenance": provenance.html},
    or the index.html path alone (the other two beside it)."""
    import pandas as pd

    from llmscape import explorer
    from llmscape.paper import provenance_context, provenance_page, render, study_context

    outs = {"html": out} if not isinstance(out, dict) else out
    page = Path(outs["html"])
    studies, entries, loaded = [], {}, []
    for name, study in config["studies"].items():
        files = {kind.removeprefix(f"{name}."): path for kind, path in inputs.items() if kind.startswith(f"{name}.")}
        figures = []
        for h5, png, html in zip(files["landscapes"], files["pngs"], files["htmls"], strict=True):
            ls = Landscape.load(h5)
            title = landscape_title(ls)
            figures.append((title, png, html))
            loaded.append((title, ls))
            layer, direction = Path(h5).stem.split("-", 1)
            entries.setdefault(name, {}).setdefault(layer, {})[direction] = explorer.entry(ls, title)
        studies.append(
            study_context(
                name,
                study,
                files["table"],
                files["compare"],
                figures,
                page.parent,
                inputs.get("curvature_table"),
                files.get("curvature"),
            )
        )
    weights = (inputs["weights_csv"], inputs["weights_png"]) if "weights_csv" in inputs else None
    dynamics = None
    if "dynamics.trajectory" in inputs:  # the dynamics study's ``dynamics.*`` inputs
        from llmscape.dynamics.report import paper_context

        dynamics = paper_context(inputs, page.parent)
        entries["dynamics"] = _dynamics_entries(inputs)
    from llmscape.basins.report import paper_context as basins_context

    basins = basins_context(inputs, config, page.parent)  # the ``_basin.*`` inputs; None without any
    entries |= _basin_entries(inputs, config)
    from llmscape.geometry.report import paper_context as geometry_context

    geometry = geometry_context(inputs, config, page.parent)  # the ``geometry.*`` inputs; None without any
    claims = pd.read_csv(inputs["claims"], keep_default_na=False) if "claims" in inputs else None
    provenance = provenance_context(config, read_manifest(inputs["model"]), [ls for _, ls in loaded])
    render(
        inputs["template"],
        page,
        config,
        inputs["model"],
        inputs["data"],
        studies,
        weights,
        dynamics,
        basins,
        geometry=geometry,
        claims=claims,
        provenance=provenance,
    )
    model = config["model"]["name"]
    explorer.write(entries, f"{model}: landscape explorer", outs.get("explorer", page.parent / "explorer.html"))
    provenance_page(Path(inputs["model"]).parent, loaded, outs.get("provenance", page.parent / "provenance.html"))


def _dynamics_entries(inputs: dict) -> dict:
    """The explorer's ``dynamics`` study: the re-centred slices by evaluation set and step, and the PCA plane,
    read beside the trajectory file (``dynamics/slices/<data>/step-<t>.h5``, ``dynamics/pca.h5``: the files the
    dynamics report, an input of the paper, has read; their steps are known only once the run has finished)."""
    from llmscape.explorer import entry

    root = Path(inputs["dynamics.trajectory"]).parent
    out: dict[str, dict] = {}
    slices = []
    for path in sorted(root.glob("slices/*/step-*.h5")):
        ls = Landscape.load(path)
        p = ls.attrs["provenance"]
        slices.append((p["data"], int(p["step"]), ls))
    for data, step, ls in sorted(slices, key=lambda x: (x[0], x[1])):
        out.setdefault(data, {})[f"step {step}"] = entry(ls, f"re-centred slice at step {step} ({data})")
    if (root / "pca.h5").exists():
        ls = Landscape.load(root / "pca.h5")
        out["pca plane"] = {f"step {int(ls.attrs['provenance']['step'])}": entry(ls, "trajectory PCA plane")}
    return out


def _basin_entries(inputs: dict, config: dict) -> dict:
    """The explorer's ``basins/<basin>`` studies: every search's metrics along its direction (1-D)."""
    from llmscape.basins.store import load_basin
    from llmscape.explorer import curves_entry

    out: dict[str, dict] = {}
    for basin in config.get("basins") or {}:
        study = out.setdefault(f"basins/{basin}", {})
        for path in inputs.get(f"_basin.{basin}.searches", []):
            attrs, results = load_basin(path)
            layer = attrs["target"]["layer"]
            metrics = [c["metric"] for c in attrs["criteria"]]
            for r in results:
                title = f"basin {basin}: {layer}, {r.label} ({r.method})"
                study.setdefault(layer, {})[r.label] = curves_entry({m: r.search.curve(m) for m in metrics}, title)
    return {k: v for k, v in out.items() if v}


def claims_table(inputs: dict, config: dict, out: str | Path) -> None:
    """tables/claims.csv from the claims rule's named inputs (llmscape.claims.evaluate)."""
    from llmscape.claims import write

    write(inputs, config, out)


def surface_estimate(model_dir: str | Path, data_path: str | Path, job_config: dict, engine_section: dict):
    """The cost of one landscape's grid (llmscape.cost), from file headers only: no weight is read."""
    from llmscape import cost

    return cost.surface(model_dir, data_path, job_config, engine_section, target_names(model_dir, job_config))


def hessian_estimate(model_dir: str | Path, data_path: str | Path, job_config: dict):
    """The cost of a Hessian job: a spectrum (``job_config["curvature"]``) or Hessian directions (an
    upper bound: every eigensolver at its ``max_iter``; random directions cost no HVP at all)."""
    from llmscape import cost

    names = target_names(model_dir, job_config)
    if "curvature" in job_config:
        c = job_config["curvature"]
        k, solver, max_iter = c["k"], c["solver"], c["max_iter"]
        extra = 2 * max_iter + c["trace_probes"] + c["density_probes"] * c["density_steps"]
    else:
        d = job_config["direction"]
        k, solver, max_iter = job_config["grid"]["dims"], d["solver"], d["max_iter"]
        extra = 0
        if d["method"] != "hessian":
            return cost.hessian(model_dir, data_path, names, k, 0)
    solve = max_iter if solver == "lanczos" else k * max_iter
    return cost.hessian(model_dir, data_path, names, max_iter + 1 + k, solve + k + extra)
