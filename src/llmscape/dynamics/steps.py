"""The dynamics study's workflow jobs, one function each (workflow/rules/dynamics.smk).

Every slice and Hessian job starts from the prepared model (theta_0 = theta*) and copies
the saved tensors of step t into it (``model_at``); the grid engines, ``compute_shard``'s
checkpoints and the curvature package then run on that model unchanged, so a slice at step
t reuses the prefix trick whenever the trained tensors sit in later decoder layers.
``job_config`` arguments are ``llmscape.dynamics.settings.job_config(config, job)``.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch

from llmscape import data as datamod
from llmscape import h5io
from llmscape.directions import Direction, directions_sha256, load_directions, save_directions
from llmscape.dynamics import geometry
from llmscape.dynamics.settings import DATASETS, train_spec
from llmscape.errors import LlmscapeError
from llmscape.models import load_prepared, read_manifest
from llmscape.provenance import versions
from llmscape.steps import prepare_data, target_names
from llmscape.store import Landscape
from llmscape.train import Run, load_run, train

log = logging.getLogger("llmscape")


def tokens_sha256(evalset: datamod.EvalSet) -> str:
    h = hashlib.sha256(evalset.input_ids.numpy().tobytes())
    h.update(evalset.attention_mask.numpy().tobytes())
    return h.hexdigest()


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------------- data


def prepare_datasets(model_dir: str | Path, phrase: dict, corpus: dict, phrase_out: str | Path, corpus_out: str | Path):
    """The phrase (one sequence) and the corpus (windows of a text file) as evaluation sets.

    ``phrase`` and ``corpus`` are ``data`` sections (``settings.data_config``). A phrase of
    fewer than 2 tokens predicts nothing and is refused, naming the key."""
    from transformers import AutoTokenizer

    text = phrase["prompts"][0]
    n = len(AutoTokenizer.from_pretrained(model_dir)(text, add_special_tokens=True)["input_ids"])
    if n < 2:
        raise LlmscapeError(
            f"config['dynamics']['phrase'] = {text!r} is {n} token(s) for this model's tokenizer; "
            "a loss needs at least 2 (one token predicting the next)"
        )
    prepare_data(model_dir, phrase, phrase_out)
    prepare_data(model_dir, corpus, corpus_out)


# ---------------------------------------------------------------------------------- costs


def slice_estimate(model_dir: str | Path, data_path: str | Path, job_config: dict, engine_section: dict):
    """The cost of one slice (``grid``) or of the PCA landscape (``pca``), from file headers (llmscape.cost)."""
    from llmscape import cost

    points = job_config["grid"]["points"] if "grid" in job_config else job_config["pca"]["points"]
    grid = {"grid": {"dims": 2, "points": points}}
    return cost.surface(model_dir, data_path, grid, engine_section, target_names(model_dir, job_config))


def hessian_estimate_at(model_dir: str | Path, data_path: str | Path, job_config: dict):
    """The cost of one step's curvature: top-k and both ends by Lanczos (each at most ``max_iter`` HVPs), the trace."""
    from llmscape import cost

    c = job_config["curvature"]
    hvps = 3 * c["max_iter"] + c["trace_probes"] + c["k"]
    return cost.hessian(model_dir, data_path, target_names(model_dir, job_config), c["max_iter"] + 1 + c["k"], hvps)


# ------------------------------------------------------------------------------- training


def train_run(model_dir: str | Path, data_path: str | Path, job_config: dict, out: str | Path) -> Run:
    """``llmscape.train`` on the trained tensors from theta*; resumes from ``<out>.partial`` after a kill."""
    names = target_names(model_dir, job_config)
    spec = train_spec(job_config)
    model, _ = load_prepared(model_dir, job_config["model"]["dtype"])
    data = datamod.load_eval_set(data_path)
    log.info(
        "training %d tensors (%d parameters) on %s: %s",
        len(names),
        sum(p.numel() for n, p in model.named_parameters() if n in names),
        job_config["train"]["data"],
        spec,
    )
    # A partial run left by a kill is resumed only for the same model and data (and spec, targets).
    identity = hashlib.sha256(f"{read_manifest(model_dir)['sha256']}:{tokens_sha256(data)}".encode()).hexdigest()
    run = train(model, data, names, spec, out, identity=identity)
    if run.stopped:
        log.warning("training run %s: %s; saved steps %s are kept and used", out, run.stopped, run.saved)
    else:
        log.info("training loss %.4g -> %.4g; saved steps %s", run.losses[0], run.losses[-1], run.saved)
    return run


def model_at(model_dir: str | Path, run: Run, step: int, dtype: str = "float32", device: str = "cpu"):
    """The prepared model with step ``step``'s trained tensors copied in (theta_t)."""
    model, tokenizer = load_prepared(model_dir, dtype, device)
    set_tensors(model, run.tensors(step))
    return model, tokenizer


@torch.no_grad()
def set_tensors(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    for name, t in tensors.items():
        params[name].copy_(t)


def _engine(model, data: datamod.EvalSet, directions: list[Direction], engine_section: dict):
    """A grid engine on an already loaded model (theta_t lives in memory) and the section's job keys."""
    from llmscape.engine import engine_on, split_section

    options, job = split_section(engine_section)
    return engine_on(options, model, data, directions), job


def _load_where(engine_section: dict) -> tuple[str, str]:
    from llmscape.engine import OPTION_DEFAULTS

    return engine_section.get("dtype", OPTION_DEFAULTS["dtype"]), engine_section.get(
        "device", OPTION_DEFAULTS["device"]
    )


def _run_facts(run: Run) -> dict:
    return {"spec": vars(run.spec), "targets": run.targets, "saved": run.saved, "stopped": run.stopped}


# --------------------------------------------------------------------------------- slices


def compute_slice(
    model_dir: str | Path,
    data_path: str | Path,
    directions_path: str | Path,
    run_dir: str | Path,
    step: int,
    job_config: dict,
    engine_section: dict,
    out: str | Path,
    shard: int = 0,
    n_shards: int = 1,
    label: str = "slice",
) -> Landscape:
    """One shard of the re-centred slice f_t(a, b) = L(theta_t + a d + b e) (the fixed slice is t = 0)."""
    from llmscape import grid

    directions, dattrs = load_directions(directions_path)
    run = load_run(run_dir)
    theta = run.tensors(step)
    model, _ = model_at(model_dir, run, step, *_load_where(engine_section))
    return _grid_job(
        model, model_dir, data_path, directions, dattrs["recipe"], grid.axes(job_config["grid"]), job_config,
        engine_section, out, shard, n_shards, label,
        {"step": step, "theta_sha256": tensors_sha256(theta), "run": _run_facts(run)},
    )  # fmt: skip


def _grid_job(
    model,
    model_dir,
    data_path,
    directions,
    recipe,
    axes,
    job_config,
    engine_section,
    out,
    shard,
    n_shards,
    label,
    extra,
) -> Landscape:
    from llmscape import cost
    from llmscape.surface import compute_shard

    names = list(directions[0])
    grid_points = {"grid": {"dims": 2, "points": max(map(len, axes))}}
    log.info("%s", cost.surface(model_dir, data_path, grid_points, engine_section, names).describe())
    evalset = datamod.load_eval_set(data_path)
    engine, job = _engine(model, evalset, directions, engine_section)
    manifest = read_manifest(model_dir)
    provenance = {
        "config": job_config,
        "model": manifest,
        "model_sha256": manifest["sha256"],
        "directions_sha256": directions_sha256(directions),
        "directions_recipe": recipe,
        "data": Path(data_path).stem,
        "data_tokens_sha256": tokens_sha256(evalset),
        "engine": engine.describe(),
        "versions": versions(),
        **extra,
    }
    return compute_shard(
        engine, axes, evalset.n_tokens, out, provenance, shard=shard, n_shards=n_shards,
        checkpoint_s=job["checkpoint_s"], label=label,
    )  # fmt: skip


# ------------------------------------------------------------------------------ curvature


def spectrum_at(
    model_dir: str | Path, data_path: str | Path, run_dir: str | Path, step: int, job_config: dict, out: str | Path
) -> None:
    """lambda_max, lambda_min, the top eigenvalues and the Hutchinson trace of the Hessian over the
    trained tensors at theta_t, on the training data (a spectrum file, llmscape.curvature)."""
    from llmscape.curvature import save_spectrum, section_spectrum

    c = job_config["curvature"]
    run = load_run(run_dir)
    names = run.targets
    log.info("%s", hessian_estimate_at(model_dir, data_path, job_config).describe())
    model, _ = model_at(model_dir, run, step, job_config["model"]["dtype"])
    spectrum = section_spectrum(model, datamod.load_eval_set(data_path), names, c)  # no density: its keys are absent
    manifest = read_manifest(model_dir)
    provenance = {
        "study": job_config["study"],
        "step": step,
        "data": Path(data_path).stem,
        "model": manifest,
        "model_sha256": manifest["sha256"],
        "config": job_config,
        "run": _run_facts(run),
        "versions": versions(),
    }
    save_spectrum(out, spectrum, provenance)
    log.info(
        "step %d: lambda_max %.4g, lambda_min %.4g, trace %.4g +- %.2g (%d HVPs, %.1fs)",
        step,
        spectrum.lambda_max,
        spectrum.lambda_min,
        spectrum.trace.trace,
        spectrum.trace.se,
        spectrum.n_hvp,
        spectrum.seconds,
    )


# ----------------------------------------------------------------------------- trajectory


def _losses(
    model, data: datamod.EvalSet, directions: list[Direction], coeffs: np.ndarray, engine_section
) -> np.ndarray:
    from llmscape.loss import metrics

    engine, _ = _engine(model, data, directions, engine_section)
    coeffs = np.asarray(coeffs, dtype=np.float64).reshape(-1, len(directions))
    out = []
    for i in range(0, len(coeffs), max(1, engine.block_size)):
        out.append(metrics(engine.evaluate(coeffs[i : i + engine.block_size]), data.n_tokens)["loss"])
    return np.concatenate(out)


@torch.no_grad()
def next_tokens(model, tokenizer, prompt: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The top-k next tokens after ``prompt`` (ids, probabilities), the prompt tokenized as the eval sets are."""
    ids = tokenizer(prompt, add_special_tokens=True, return_tensors="pt")["input_ids"].to(model.device)
    if ids.shape[1] < 1:
        raise LlmscapeError(f"config['dynamics']['next_token']['prompt'] = {prompt!r} tokenizes to nothing")
    probs = torch.softmax(model(input_ids=ids).logits[0, -1].double(), dim=-1)
    top = torch.topk(probs, k)
    return top.indices.cpu().numpy(), top.values.cpu().numpy()


def trajectory(
    model_dir: str | Path,
    data_paths: dict[str, str | Path],
    directions_path: str | Path,
    run_dir: str | Path,
    job_config: dict,
    engine_section: dict,
    out: str | Path,
    pca_directions_out: str | Path,
) -> None:
    """Where the run went, seen from the fixed plane at theta_0 and from its own PCA plane at theta_T.

    ``data_paths``: the evaluation sets by name (``phrase``, ``corpus``). Writes the trajectory
    file (docs/results-format.md) and the two PCA directions (a directions file)."""
    run = load_run(run_dir)
    steps = list(run.saved)
    if len(steps) < 3:
        raise LlmscapeError(
            f"the training run {run_dir} saved steps {steps} only"
            + (f" ({run.stopped})" if run.stopped else "")
            + "; the trajectory PCA needs at least 3: lower dynamics.train.lr or save more often"
        )
    dtype, device = _load_where(engine_section)
    thetas = {t: {n: v.double() for n, v in run.tensors(t).items()} for t in steps}
    (d, e), dattrs = load_directions(directions_path)
    data = {name: datamod.load_eval_set(data_paths[name]) for name in DATASETS}
    train_data = job_config["train"]["data"]
    first, last = thetas[steps[0]], thetas[steps[-1]]

    # The fixed plane at theta_0: each step's projection.
    projections = [geometry.plane_projection(geometry.difference(thetas[t], first), [d, e]) for t in steps]
    fixed_coords = np.array([p.coords for p in projections])
    log.info(
        "fraction of ||theta_t - theta_0|| outside the fixed plane: %s",
        ", ".join(f"step {t}: {p.outside_fraction:.6f}" for t, p in zip(steps, projections, strict=True)),
    )

    # PCA of theta_t - theta_T through the Gram matrix of the saved steps.
    c = job_config["pca"]
    pca = geometry.gram_pca([geometry.difference(thetas[t], last) for t in steps], 2, c["centre"])
    u = [{n: v.float() for n, v in comp.items()} for comp in pca.components]
    pca_projections = [geometry.plane_projection(geometry.difference(thetas[t], last), u) for t in steps]
    ratio = pca.explained_variance_ratio
    log.info("trajectory PCA: explained variance ratio %s", np.array2string(ratio[:4], precision=4))
    recipe = {
        "name": "pca",
        "method": "pca",
        "centre": c["centre"],
        "targets": run.targets,
        "steps": steps,
        "explained_variance": pca.explained_variance[:2].tolist(),
        "explained_variance_ratio": ratio[:2].tolist(),
        "origin_step": steps[-1],
        "n_parameters": int(sum(v.numel() for v in first.values())),
        "model_sha256": read_manifest(model_dir)["sha256"],
        "layer": job_config["layer"],
        "norm": "none",
    }
    save_directions(pca_directions_out, u, recipe)

    # Losses at theta_t and at its projections, on one engine per evaluation set at theta_0 (one prefix):
    # its axes are d, e, each later step's delta_t = theta_t - theta_0 and u_1, u_2, so that theta_t is
    # the point with coefficient 1 on delta_t, and theta_T + c_1 u_1 + c_2 u_2 the point 1 on delta_T, c on u.
    model, tokenizer = load_prepared(model_dir, dtype, device)
    set_tensors(model, first)
    deltas = [{n: v.float() for n, v in geometry.difference(thetas[t], first).items()} for t in steps[1:]]
    axes = [d, e, *deltas, *u]
    n = len(steps)

    def point(step_index: int = 0, fixed=(0.0, 0.0), pca_coords=None) -> np.ndarray:
        c = np.zeros(len(axes))
        c[:2] = fixed
        if step_index:
            c[1 + step_index] = 1.0
        if pca_coords is not None:
            c[-2:] = pca_coords
        return c

    points = [point(i) for i in range(n)] + [point(fixed=fixed_coords[i]) for i in range(n)]
    pca_points = [point(n - 1, pca_coords=pca.coords[i]) for i in range(n)]
    loss, fixed_loss = {}, {}
    for name in DATASETS:
        values = _losses(
            model, data[name], axes, np.array(points + (pca_points if name == train_data else [])), engine_section
        )
        loss[name], fixed_loss[name] = values[:n], values[n : 2 * n]
        if name == train_data:
            pca_loss = values[2 * n :]

    nt = job_config["next_token"]
    settings, ids, probs = [], [], []
    for label, theta in [(f"step {t}" + (" (θ*)" if t == steps[0] else ""), thetas[t]) for t in steps] + [
        (f"θ* + {a:g}·d", geometry.combine([1.0, a], [first, {n: v.double() for n, v in d.items()}]))
        for a in nt["alphas"]
    ]:
        set_tensors(model, theta)
        i, p = next_tokens(model, tokenizer, nt["prompt"], nt["top_k"])
        settings.append(label)
        ids.append(i)
        probs.append(p)
    ids, probs = np.array(ids), np.array(probs)
    tokens = np.array([[tokenizer.decode([int(x)]) for x in row] for row in ids], dtype=object)

    manifest = read_manifest(model_dir)
    provenance = {
        "config": job_config,
        "model": manifest,
        "model_sha256": manifest["sha256"],
        "run": _run_facts(run),
        "directions_sha256": directions_sha256([d, e]),
        "directions_recipe": dattrs["recipe"],
        "data_tokens_sha256": {name: tokens_sha256(data[name]) for name in DATASETS},
        "corpus": _corpus_facts(data_paths["corpus"]),
        "versions": versions(),
    }
    import h5py

    with h5io.write(out, "trajectory") as f:
        f.create_dataset("steps", data=np.array(steps, dtype=np.int64))
        f.create_dataset("train_loss", data=np.array(run.losses, dtype=np.float64))
        f.create_dataset("step_norm", data=np.array([p.step_norm for p in projections]))
        for name in DATASETS:
            f.create_dataset(f"loss/{name}", data=loss[name])
            f.create_dataset(f"fixed/loss/{name}", data=fixed_loss[name])
        f.create_dataset("fixed/coords", data=fixed_coords)
        f.create_dataset("fixed/outside_fraction", data=np.array([p.outside_fraction for p in projections]))
        f.create_dataset("fixed/in_plane_fraction", data=np.array([p.in_plane_fraction for p in projections]))
        f.create_dataset("pca/coords", data=pca.coords)
        f.create_dataset("pca/explained_variance", data=pca.explained_variance)
        f.create_dataset("pca/explained_variance_ratio", data=ratio)
        f.create_dataset("pca/outside_fraction", data=np.array([p.outside_fraction for p in pca_projections]))
        f.create_dataset("pca/loss", data=pca_loss)
        f.create_dataset("next_token/settings", data=np.array(settings, dtype=h5py.string_dtype()))
        f.create_dataset("next_token/token_ids", data=ids.astype(np.int64))
        f.create_dataset("next_token/tokens", data=tokens.astype(h5py.string_dtype()))
        f.create_dataset("next_token/probabilities", data=probs)
        h5io.set_attrs(
            f,
            {
                "provenance": provenance,
                "train_data": train_data,
                "prompt": nt["prompt"],
                "pca_centred": bool(c["centre"]),
            },
        )
    log.info(
        "step %d: loss %s at theta_t; on the fixed plane's projection %s",
        steps[-1],
        {n: round(float(v[-1]), 4) for n, v in loss.items()},
        {n: round(float(v[-1]), 4) for n, v in fixed_loss.items()},
    )


def _corpus_facts(corpus_path: str | Path) -> dict:
    """The corpus text file an evaluation set was cut from, and its sha256."""
    from llmscape.dynamics.corpus import sha256_of

    with h5io.read(corpus_path, "eval-set") as f:
        files = h5io.get_attrs(f)["spec"].get("files") or []
    return {"path": files[0] if files else None, "sha256": sha256_of(files[0]) if files else None}


def load_trajectory(path: str | Path) -> dict:
    """A trajectory file as a dict of arrays (groups flattened to ``a/b`` keys) plus ``attrs``."""
    out: dict = {}
    with h5io.read(path, "trajectory") as f:

        def visit(name, obj):
            if hasattr(obj, "shape"):
                value = obj[...]
                if value.dtype.kind in "OS":
                    value = np.array([v.decode() if isinstance(v, bytes) else v for v in value.ravel()], dtype=object)
                    value = value.reshape(obj.shape)
                out[name] = value

        f.visititems(visit)
        out["attrs"] = h5io.get_attrs(f)
    return out


def pca_axes(trajectory_path: str | Path, pca_config: dict) -> list[np.ndarray]:
    """The PCA landscape's grid: symmetric about theta_T, reaching ``1 + margin`` times the path's
    furthest coordinate along each component (a component the path does not leave gets the other's reach)."""
    coords = load_trajectory(trajectory_path)["pca/coords"]
    reach = np.abs(coords).max(axis=0)
    reach = np.where(reach > 1e-12 * reach.max(), reach, reach.max()) * (1 + pca_config["margin"])
    return [np.linspace(-r, r, pca_config["points"]) for r in reach]


def compute_pca_slice(
    model_dir: str | Path,
    data_path: str | Path,
    pca_directions_path: str | Path,
    trajectory_path: str | Path,
    run_dir: str | Path,
    job_config: dict,
    engine_section: dict,
    out: str | Path,
    shard: int = 0,
    n_shards: int = 1,
    label: str = "pca",
) -> Landscape:
    """One shard of the landscape around theta_T in the plane of the trajectory's two principal directions."""
    directions, dattrs = load_directions(pca_directions_path)
    run = load_run(run_dir)
    last = run.saved[-1]
    model, _ = model_at(model_dir, run, last, *_load_where(engine_section))
    return _grid_job(
        model, model_dir, data_path, directions, dattrs["recipe"], pca_axes(trajectory_path, job_config["pca"]),
        job_config, engine_section, out, shard, n_shards, label,
        {"step": last, "theta_sha256": tensors_sha256(run.tensors(last)), "run": _run_facts(run)},
    )  # fmt: skip
