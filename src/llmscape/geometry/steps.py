"""The geometry section's workflow jobs, one function each (workflow/rules/geometry.smk).

``section`` arguments are the config's validated ``geometry`` section; every job also gets
the config's ``model`` section for provenance where it reads the prepared model.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from llmscape import data as datamod
from llmscape.errors import LlmscapeError
from llmscape.models import load_prepared, n_layers, read_manifest
from llmscape.provenance import versions
from llmscape.study import layer_token
from llmscape.targets import resolve_layer, select

log = logging.getLogger("llmscape")


def _manifest_facts(model_dir) -> dict:
    m = read_manifest(model_dir)
    return {"model": m, "model_sha256": m["sha256"], "versions": versions()}


# ------------------------------------------------------------------------ exact spectrum


def exact_spectrum(
    data_path: str | Path, section: dict, run_dir: str | Path, exact_out: str | Path, spectrum_out: str | Path,
    csv: str | Path,
) -> None:  # fmt: skip
    """Train the tiny Llama on the evaluation text (llmscape.train), then its exact Hessian over the targets
    beside compute_spectrum's estimates (llmscape.geometry.exact): two files and the comparison table."""
    from llmscape.curvature import save_spectrum, section_spectrum
    from llmscape.geometry.exact import (
        ExactResult,
        TinySpec,
        compact_vocabulary,
        comparison_table,
        exact_hessian,
        save_exact,
        tiny_llama,
    )
    from llmscape.geometry.settings import train_spec
    from llmscape.train import train

    e = section["exact"]
    data, vocab_ids = compact_vocabulary(datamod.load_eval_set(data_path))
    spec = TinySpec(**e["model"])
    model = tiny_llama(len(vocab_ids), spec)
    names = [n for n, _ in model.named_parameters()]
    log.info("tiny Llama: %d parameters, vocabulary of %d ids; training all of them", model.num_parameters(),
             len(vocab_ids))  # fmt: skip
    run = train(model, data, names, train_spec(e), run_dir)
    log.info("training loss %.4g -> %.4g in %d steps", run.losses[0], run.losses[-1], len(run.losses))
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    targets = select(shapes, e["tensors"], e["layer"], spec.layers, e["include_1d"])
    if not targets:
        raise LlmscapeError(
            f"config['geometry']['exact']['tensors'] = {e['tensors']} select no tensor of the tiny model"
        )
    t0 = time.perf_counter()
    h = exact_hessian(model, data, targets)
    eigenvalues = np.linalg.eigh(h)[0]
    seconds = time.perf_counter() - t0
    log.info("exact Hessian %d x %d in %.1fs: lambda in [%.4g, %.4g]", *h.shape, seconds, eigenvalues[0],
             eigenvalues[-1])  # fmt: skip
    spectrum = section_spectrum(model, data, targets, e)
    attrs = {"tiny_model": e["model"], "train": e["train"], "layer": str(e["layer"]),
             "train_loss_final": float(run.losses[-1]), "data_spec": Path(data_path).stem}  # fmt: skip
    save_spectrum(spectrum_out, spectrum, {"study": "geometry", "layer": str(e["layer"]), "tiny": attrs})
    result = ExactResult(targets, eigenvalues, run.losses, vocab_ids, seconds)
    save_exact(exact_out, result, spectrum, attrs | {"versions": versions()})
    from llmscape.geometry.exact import load_exact

    table = pd.DataFrame(comparison_table(load_exact(exact_out), spectrum))
    table.to_csv(csv, index=False, float_format="%.6g")
    for r in table.itertuples():
        log.info("%-11s exact %.6g, estimate %.6g (rel. error %.2g)", r.quantity, r.exact, r.estimate, r.rel_error)


# ----------------------------------------------------------------------- extreme curves


def extreme_curves(
    model, model_dir: str | Path, data_path: str | Path, spectra: list[str | Path], section: dict,
    engine_section: dict, outs: list[str | Path],
) -> None:  # fmt: skip
    """The loss along each layer entry's lambda_max, lambda_min and near-zero directions (one curves file per
    spectrum file, in order), on the config's grid engine over the loaded ``model`` (its dtype and device:
    the engine section's kind and block options apply, not its dtype)."""
    from llmscape.curvature import load_spectrum
    from llmscape.engine import engine_on, split_section
    from llmscape.geometry.extreme import DIRECTIONS, curves, save_curves, split_flat
    from llmscape.grid import axes
    from llmscape.models import tensor_shapes

    c = section["curves"]
    coeffs = axes({"dims": 1, "min": c["min"], "max": c["max"], "points": c["points"]})[0]
    evalset = datamod.load_eval_set(data_path)
    options, _ = split_section(engine_section)
    all_shapes = tensor_shapes(model_dir)
    for path, out in zip(spectra, outs, strict=True):
        spectrum, prov = load_spectrum(path)
        missing = [d for d in DIRECTIONS if d not in spectrum.vectors]
        if missing:
            raise LlmscapeError(f"{path} holds no {missing} vectors: its study needs curvature.vectors: true")
        shapes = {t: all_shapes[t] for t in spectrum.targets}
        dirs = [split_flat(spectrum.vectors[d][0], shapes) for d in DIRECTIONS]
        engine = engine_on(options, model, evalset, dirs)
        t0 = time.perf_counter()
        losses, centre = curves(engine, evalset.n_tokens, coeffs, len(dirs))
        lam = [spectrum.vectors[d][1]["rayleigh"] for d in DIRECTIONS]
        res = [spectrum.vectors[d][1]["residual"] for d in DIRECTIONS]
        provenance = {"study": prov["study"], "layer": prov["layer"], "layer_index": prov["layer_index"],
                      "targets": spectrum.targets, "spectrum": str(path), "grid": c, "engine": engine.describe(),
                      "wall_time_s": time.perf_counter() - t0, **_manifest_facts(model_dir)}  # fmt: skip
        save_curves(out, coeffs, DIRECTIONS, losses, lam, res, centre, provenance)
        log.info("%s: curvature %s, loss at the ends %s (%.1fs)", prov["layer"], np.round(lam, 4),
                 np.round(losses[:, [0, -1]], 3).tolist(), provenance["wall_time_s"])  # fmt: skip


# -------------------------------------------------------------------------- gradients


def at_theta(
    model_dir: str | Path, data_path: str | Path, section: dict, model_section: dict, engine_section: dict,
    outputs: dict, spectra: list[str | Path] = (),
) -> None:  # fmt: skip
    """Everything of the section that evaluates the model at theta*, with one model load (the model's loading and
    imports cost more than the gradients and the attention themselves): the extreme-curvature curves (when
    ``outputs`` names ``curves``, a file per spectrum file of ``spectra``), the gradient norms (``tensors_csv``,
    ``layers_csv``, ``gradients_png``, ``gradients_pdf``) and the attention geometry (``attention_h5``,
    ``heads_csv``)."""
    model, tokenizer = load_prepared(model_dir, model_section["dtype"])
    o = outputs
    if "curves" in o:
        extreme_curves(model, model_dir, data_path, list(spectra), section, engine_section, list(o["curves"]))
    if "tensors_csv" in o:
        gradients(model, data_path, model_section, o["tensors_csv"], o["layers_csv"], o["gradients_png"],
                  o["gradients_pdf"])  # fmt: skip
    if "attention_h5" in o:
        attention(model, tokenizer, model_dir, section, model_section, o["attention_h5"], o["heads_csv"])


def gradients(
    model, data_path: str | Path, model_section: dict, tensors_csv: str | Path, layers_csv: str | Path,
    png: str | Path, pdf: str | Path,
) -> None:  # fmt: skip
    """Gradient norms at theta* of every tensor and every layer, relative to the weights' (tables and a figure)."""
    from llmscape.geometry.gradients import gradient_norms, per_layer
    from llmscape.geometry.report import plot_gradients

    table = gradient_norms(model, datamod.load_eval_set(data_path))
    layers = per_layer(table)
    table.to_csv(tensors_csv, index=False, float_format="%.6g")
    layers.to_csv(layers_csv, index=False, float_format="%.6g")
    plot_gradients(table, layers, f"{model_section['name']}: gradient norm at theta* / weight norm", png, pdf)
    total = np.sqrt((table.grad_norm**2).sum())
    log.info("|grad L| = %.4g over %d tensors; largest relative: %s", total, len(table),
             table.loc[table.relative.idxmax(), "tensor"])  # fmt: skip


# -------------------------------------------------------------------------- attention


def attention(
    model, tokenizer, model_dir: str | Path, section: dict, model_section: dict, out: str | Path, csv: str | Path
) -> None:
    """Attention weights and pre-softmax scores of the prompt per chosen layer and head (attention file), and
    the heads' W_Q/W_K/W_V/W_O singular values, effective ranks and condition numbers (table)."""
    from llmscape.geometry.attention import attention_maps, head_spectra, save_attention

    a = section["attention"]
    n = n_layers(model_dir)
    layers = list(dict.fromkeys(resolve_layer(p, n) for p in a["layers"]))
    ids = tokenizer(a["prompt"], add_special_tokens=True, return_tensors="pt")["input_ids"]
    if ids.shape[1] < 2:
        raise LlmscapeError(f"config['geometry']['attention']['prompt'] = {a['prompt']!r} is one token")
    maps = attention_maps(model, ids, layers)
    tokens = [tokenizer.decode([t]) for t in ids[0].tolist()]
    provenance = {"config": {"model": model_section, "attention": a}, **_manifest_facts(model_dir)}
    attrs = {"prompt": a["prompt"], "positions": [layer_token(p) for p in a["layers"]], "provenance": provenance,
             "position_layers": [resolve_layer(p, n) for p in a["layers"]]}  # fmt: skip
    save_attention(out, maps, tokens, ids[0].numpy(), attrs)
    spectra = head_spectra(model, layers)
    spectra.to_csv(csv, index=False, float_format="%.6g")
    log.info("attention of %d tokens in layers %s; median erank per matrix %s", len(tokens), layers,
             spectra.groupby("matrix").erank.median().round(2).to_dict())  # fmt: skip


# ----------------------------------------------------------------------------- report


def report(inputs: dict, outputs: dict, section: dict) -> None:
    """The light part (llmscape.geometry.report): figures from the files above, the sharpness table."""
    from llmscape.geometry.report import write_report

    write_report(inputs, outputs, section)
