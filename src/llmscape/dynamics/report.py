"""The dynamics study's tables, figures and the paper's context, all read from its result files.

Tables (``tables/dynamics/``): ``steps.csv`` (one row per saved step: losses at theta_t, on
the fixed plane's projection and on the PCA plane's, the step's size and the fraction outside
each plane, the curvature), ``roughness.csv`` (one row per landscape: roughness and local
minima), ``next_token.csv`` (one row per setting and rank). Figures (``figures/dynamics/``):
``slices`` (a panel of the re-centred slices over the steps, static; ``slices.html`` the
same as a plotly animation with a step slider, plotly.js inlined), ``loss`` (the loss
against the step), ``sharpness`` (curvature against the step), ``pca`` (the landscape in
the trajectory's PCA plane with the projected path).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from llmscape.dynamics import geometry
from llmscape.dynamics.settings import DATASETS
from llmscape.dynamics.steps import load_trajectory
from llmscape.plots import DPI, PDF_METADATA, PNG_METADATA, clipped, round_levels  # also selects the Agg backend
from llmscape.store import Landscape

FIGURES = ("slices", "loss", "sharpness", "pca")


def _save(fig, png: str | Path, pdf: str | Path) -> None:
    """PNG and PDF without timestamps (byte-identical reruns), as llmscape.plots writes them."""
    import matplotlib.pyplot as plt

    fig.savefig(png, dpi=DPI, metadata=PNG_METADATA)
    fig.savefig(pdf, metadata=PDF_METADATA)
    plt.close(fig)


def _slice_key(ls: Landscape) -> tuple[str, int]:
    p = ls.attrs["provenance"]
    return p["data"], int(p["step"])


def steps_table(trajectory: dict, spectra: list[tuple[dict, object]] | None = None) -> pd.DataFrame:
    """One row per saved step (see the module docstring); ``spectra``: (provenance, Spectrum) per step."""
    t = trajectory
    steps = t["steps"]
    log = t["train_loss"]
    rows = {
        "step": steps,
        "train_log_loss": [log[s] if s < len(log) else np.nan for s in steps],
        **{f"loss_{n}": t[f"loss/{n}"] for n in DATASETS},
        "step_norm": t["step_norm"],
        "fixed_a": t["fixed/coords"][:, 0],
        "fixed_b": t["fixed/coords"][:, 1],
        **{f"fixed_loss_{n}": t[f"fixed/loss/{n}"] for n in DATASETS},
        "fixed_outside_fraction": t["fixed/outside_fraction"],
        "fixed_in_plane_fraction": t["fixed/in_plane_fraction"],
        "pca_1": t["pca/coords"][:, 0],
        "pca_2": t["pca/coords"][:, 1],
        "pca_loss": t["pca/loss"],
        "pca_outside_fraction": t["pca/outside_fraction"],
    }
    table = pd.DataFrame(rows)
    if spectra:
        by_step = {int(prov["step"]): s for prov, s in spectra}
        for col, get in [
            ("lambda_max", lambda s: s.lambda_max),
            ("lambda_min", lambda s: s.lambda_min),
            ("sharpness_ratio", lambda s: s.ratio),
            ("trace", lambda s: s.trace.trace),
            ("trace_se", lambda s: s.trace.se),
        ]:
            table[col] = [get(by_step[s]) if s in by_step else np.nan for s in steps]
    return table


def roughness_table(landscapes: list[tuple[str, Landscape]]) -> pd.DataFrame:
    """Roughness and local minima of each (label, landscape)."""
    rows = []
    for label, ls in landscapes:
        p = ls.attrs["provenance"]
        centre = tuple(len(a) // 2 for a in ls.axes)
        rows.append(
            {
                "landscape": label,
                "data": p["data"],
                "step": int(p["step"]),
                "plane": "pca" if p["directions_recipe"]["method"] == "pca" else "fixed",
                "loss_centre": ls.loss[centre],
                "loss_min": np.nanmin(ls.loss),
                "loss_max": np.nanmax(ls.loss),
                "roughness": geometry.roughness(ls.loss),
                "quadratic_residual": geometry.quadratic_residual(ls.loss),
                "local_minima": geometry.local_minima(ls.loss),
            }
        )
    return pd.DataFrame(rows)


def next_token_table(trajectory: dict) -> pd.DataFrame:
    t = trajectory
    rows = []
    for i, setting in enumerate(t["next_token/settings"]):
        for rank, (tid, tok, p) in enumerate(
            zip(t["next_token/token_ids"][i], t["next_token/tokens"][i], t["next_token/probabilities"][i], strict=True)
        ):
            rows.append({"setting": setting, "rank": rank + 1, "token": tok, "token_id": int(tid), "probability": p})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------- figures


def _levels(maps: list[np.ndarray], clip: float) -> np.ndarray:
    finite = [m[np.isfinite(m)] for m in maps]
    low = min(f.min() for f in finite if f.size)
    high = max(f.max() for f in finite if f.size)
    return round_levels(low, min(high, low + clip))


def plot_slices(
    slices: dict[tuple[str, int], Landscape], trajectory: dict, png: str | Path, pdf: str | Path, clip: float
) -> None:
    """A row per evaluation set, a column per saved step; one colour scale per row (lowest loss of the row
    to that plus ``clip``). The step-0 panels (the fixed slice) show where each theta_t projects (white)."""
    import matplotlib.pyplot as plt

    steps = [int(s) for s in trajectory["steps"]]
    data = [n for n in DATASETS if any(k[0] == n for k in slices)]
    fig, axes = plt.subplots(
        len(data),
        len(steps),
        figsize=(2.8 * len(steps) + 1.2, 2.6 * len(data) + 0.5),
        squeeze=False,
        sharex=True,
        sharey=True,
        layout="constrained",
    )
    coords = trajectory["fixed/coords"]
    for r, name in enumerate(data):
        row = [slices[(name, s)] for s in steps if (name, s) in slices]
        levels = _levels([clipped(ls.loss, clip)[0] for ls in row], clip)
        cs = None
        for c, step in enumerate(steps):
            ax = axes[r, c]
            if (name, step) not in slices:
                ax.axis("off")
                ax.text(0.5, 0.5, f"{name}: no slice at step {step}", ha="center", va="center", fontsize=8)
                continue
            ls = slices[(name, step)]
            z, _ = clipped(ls.loss, clip)
            a, b = ls.axes
            cs = ax.contourf(b, a, z, levels=levels, cmap="viridis", extend="both")
            ax.contour(b, a, z, levels=levels, colors="k", linewidths=0.2)
            ax.plot([0], [0], "r+", markersize=8)
            if step == steps[0]:
                ax.plot(coords[:, 1], coords[:, 0], "w.-", markersize=4, lw=0.8)
            centre = ls.loss[len(a) // 2, len(b) // 2]
            ax.set_title(f"{name}, step {step}: centre {centre:.4g}", fontsize=8)
            ax.tick_params(labelsize=7)
            if r == len(data) - 1:
                ax.set_xlabel(r"$\beta$", fontsize=8)
            if c == 0:
                ax.set_ylabel(r"$\alpha$", fontsize=8)
        if cs is not None:
            fig.colorbar(cs, ax=list(axes[r]), shrink=0.85, label="loss")
    for c, step in enumerate(steps):  # tick labels under the lowest panel of each column
        lowest = max(r for r, name in enumerate(data) if (name, step) in slices or r == 0)
        axes[lowest, c].xaxis.set_tick_params(labelbottom=True)
        axes[lowest, c].set_xlabel(r"$\beta$", fontsize=8)
        axes[lowest, c].xaxis.set_major_locator(plt.MaxNLocator(5))
    fig.suptitle(
        r"$f_t(\alpha,\beta) = L(\theta_t + \alpha d + \beta e)$, d and e fixed at $\theta_0$; "
        "one colour scale per row",
        fontsize=9,
    )
    _save(fig, png, pdf)


def animate_slices(slices: dict[tuple[str, int], Landscape], data: str, html: str | Path, title: str) -> None:
    """The re-centred slices of one evaluation set as surfaces with a step slider (offline: plotly.js inlined)."""
    import plotly.graph_objects as go

    keys = sorted(k for k in slices if k[0] == data)
    z_all = [np.where(np.isfinite(slices[k].loss), slices[k].loss, np.nan) for k in keys]
    zmin, zmax = float(np.nanmin(z_all)), float(np.nanmax(z_all))

    def surface(k, z):
        a, b = slices[k].axes
        return go.Surface(x=b, y=a, z=z, colorscale="Viridis", cmin=zmin, cmax=zmax)

    frames = [go.Frame(data=[surface(k, z)], name=str(k[1])) for k, z in zip(keys, z_all, strict=True)]
    slider = {
        "steps": [
            {"label": f"step {k[1]}", "method": "animate", "args": [[str(k[1])], {"mode": "immediate"}]} for k in keys
        ],
        "currentvalue": {"prefix": ""},
    }
    play = {
        "type": "buttons",
        "buttons": [{"label": "play", "method": "animate", "args": [None, {"frame": {"duration": 700}}]}],
    }
    fig = go.Figure(data=[surface(keys[0], z_all[0])], frames=frames)
    fig.update_layout(
        title=title,
        sliders=[slider],
        updatemenus=[play],
        width=800,
        height=700,
        scene={"xaxis_title": "beta", "yaxis_title": "alpha", "zaxis_title": "loss", "zaxis": {"range": [zmin, zmax]}},
    )
    fig.write_html(html, include_plotlyjs=True, full_html=True, div_id="llmscape-dynamics", auto_play=False)


def plot_loss(trajectory: dict, fixed_min: dict[str, float], png: str | Path, pdf: str | Path) -> None:
    """The training log's loss at every step; at the saved steps the loss at theta_t, at its projection
    onto the fixed plane and onto the PCA plane; the fixed slice's lowest loss as a dashed line."""
    import matplotlib.pyplot as plt

    t = trajectory
    steps = t["steps"]
    train_data = t["attrs"]["train_data"]
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    log = t["train_loss"]
    ax.plot(np.arange(len(log)), log, "-", color="0.5", lw=1, label=f"training log ({train_data} batches)")
    colours = {"phrase": "C0", "corpus": "C1"}
    for name in DATASETS:
        ax.plot(steps, t[f"loss/{name}"], "o-", color=colours[name], label=rf"{name}: $L(\theta_t)$")
        ax.plot(
            steps,
            t[f"fixed/loss/{name}"],
            "s--",
            color=colours[name],
            mfc="none",
            label=f"{name}: fixed-plane projection",
        )
        if name in fixed_min:
            ax.axhline(
                fixed_min[name], color=colours[name], ls=":", lw=1, label=f"{name}: lowest loss on the fixed slice"
            )
    ax.plot(steps, t["pca/loss"], "^-.", color="C2", mfc="none", label=f"{train_data}: PCA-plane projection")
    values = np.concatenate([log, *(t[f"loss/{n}"] for n in DATASETS), t["pca/loss"]])
    values = values[np.isfinite(values)]
    if values.size and values.min() > 0 and values.max() / values.min() > 100:
        ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("loss (nats)" + (", log scale" if ax.get_yscale() == "log" else ""))
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    stopped = t["attrs"]["provenance"]["run"]["stopped"]
    ax.set_title("loss along training" + (f" (stopped: {stopped})" if stopped else ""), fontsize=9)
    fig.tight_layout()
    _save(fig, png, pdf)


def plot_sharpness(table: pd.DataFrame, png: str | Path, pdf: str | Path) -> None:
    """The loss, lambda_max, lambda_min, the trace and lambda_max / |lambda_min| against the step."""
    import matplotlib.pyplot as plt

    panels = [
        ("loss_" + table.attrs.get("train_data", "phrase"), "loss at θ_t"),
        ("lambda_max", "λ_max"),
        ("lambda_min", "λ_min"),
        ("trace", "trace (Hutchinson)"),
        ("sharpness_ratio", "λ_max / |λ_min|"),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.0 * len(panels), 3.0))
    for ax, (col, label) in zip(axes, panels, strict=True):
        if col not in table:
            ax.text(0.5, 0.5, "not computed\n(dynamics.curvature.enabled: false)", ha="center", va="center", fontsize=8)
        else:
            ax.plot(table["step"], table[col], "o-", markersize=3)
            if col == "trace" and "trace_se" in table:
                ax.fill_between(
                    table["step"], table[col] - table["trace_se"], table[col] + table["trace_se"], alpha=0.3
                )
            values = table[col].to_numpy(dtype=float)
            if col == "sharpness_ratio" and (values > 0).all():
                ax.set_yscale("log")  # lambda_min near 0 sends the ratio up by orders of magnitude
                label += " (log scale)"
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    _save(fig, png, pdf)


def plot_pca(ls: Landscape, trajectory: dict, png: str | Path, pdf: str | Path, clip: float) -> None:
    """The landscape around theta_T in the PCA plane, the projected path on it, and the loss at the
    projected points beside the loss at the true points."""
    import matplotlib.pyplot as plt

    t = trajectory
    coords, steps = t["pca/coords"], t["steps"]
    ratio = t["pca/explained_variance_ratio"]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.3))
    z, n_clipped = clipped(ls.loss, clip)
    a, b = ls.axes
    levels = round_levels(z.min(), z.max())
    cs = ax.contourf(b, a, z, levels=levels, cmap="viridis", extend="both")
    ax.contour(b, a, z, levels=levels, colors="k", linewidths=0.3)
    ax.plot(coords[:, 1], coords[:, 0], "w.-", lw=1)
    for (ca, cb), s in zip(coords, steps, strict=True):
        ax.annotate(str(s), (cb, ca), color="w", fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(f"PC 2 ({100 * ratio[1]:.1f}% of variance)")
    ax.set_ylabel(f"PC 1 ({100 * ratio[0]:.1f}%)")
    ax.set_title("loss around θ_T, projected path" + (f" ({n_clipped} clipped)" if n_clipped else ""), fontsize=9)
    fig.colorbar(cs, ax=ax, shrink=0.85, label="loss")
    train_data = t["attrs"]["train_data"]
    ax2.plot(steps, t[f"loss/{train_data}"], "o-", label=r"true point $\theta_t$")
    ax2.plot(steps, t["pca/loss"], "s--", mfc="none", label="projection into the PCA plane")
    ax2.set_xlabel("training step")
    ax2.set_ylabel(f"loss on the {train_data} (nats)")
    ax2.legend(fontsize=7)
    gap = np.nanmax(np.abs(t["pca/loss"] - t[f"loss/{train_data}"]))
    ax2.set_title(f"loss at the true points and at their projections (largest gap {gap:.2g} nats)", fontsize=9)
    fig.tight_layout()
    _save(fig, png, pdf)


# -------------------------------------------------------------------------------- the job


def make_report(
    trajectory_path: str | Path,
    slice_paths: list[str | Path],
    pca_path: str | Path,
    spectrum_paths: list[str | Path],
    tables: dict[str, str | Path],
    figures: dict[str, str | Path],
    clip: float,
) -> None:
    """Every table and figure of the dynamics study. ``tables``: paths for ``steps``, ``roughness``,
    ``next_token``; ``figures``: ``<name>_png``/``<name>_pdf`` per name in ``FIGURES`` and ``slices_html``."""
    from llmscape.curvature import load_spectrum

    t = load_trajectory(trajectory_path)
    slices = {}
    for p in slice_paths:
        ls = Landscape.load(p)
        slices[_slice_key(ls)] = ls
    pca = Landscape.load(pca_path)
    spectra = [load_spectrum(p)[::-1] for p in spectrum_paths]
    table = steps_table(t, spectra)
    table.attrs["train_data"] = t["attrs"]["train_data"]
    for path in list(tables.values()) + list(figures.values()):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(tables["steps"], index=False, float_format="%.6g")
    labelled = [
        (f"{d} step {s}", slices[(d, s)]) for d, s in sorted(slices, key=lambda k: (DATASETS.index(k[0]), k[1]))
    ]
    labelled.append((f"{t['attrs']['train_data']} PCA plane at step {int(t['steps'][-1])}", pca))
    roughness_table(labelled).to_csv(tables["roughness"], index=False, float_format="%.6g")
    next_token_table(t).to_csv(tables["next_token"], index=False, float_format="%.6g")
    plot_slices(slices, t, figures["slices_png"], figures["slices_pdf"], clip)
    animate_slices(slices, "phrase", figures["slices_html"], "re-centred slices of the phrase loss over training")
    first = int(t["steps"][0])
    fixed_min = {n: float(np.nanmin(slices[(n, first)].loss)) for n in DATASETS if (n, first) in slices}
    plot_loss(t, fixed_min, figures["loss_png"], figures["loss_pdf"])
    plot_sharpness(table, figures["sharpness_png"], figures["sharpness_pdf"])
    plot_pca(pca, t, figures["pca_png"], figures["pca_pdf"], clip)


# ---------------------------------------------------------------------------------- paper


def _smoother(pairs: list[dict], measure: str) -> dict[str, int]:
    """At how many compared steps each evaluation set has the lower value of ``measure``."""
    return {
        n: sum(p[f"{n}_{measure}"] < p[f"{o}_{measure}"] for p in pairs)
        for n, o in (("corpus", "phrase"), ("phrase", "corpus"))
    }


def paper_context(inputs: dict, out_dir: str | Path) -> dict:
    """The paper's ``dynamics`` variable from the paper rule's ``dynamics.*`` inputs (common.smk
    paper_inputs): the tables, the trajectory file, the figures (inlined) and the animation (linked)."""
    from llmscape.paper import data_uri

    files = {k.removeprefix("dynamics."): v for k, v in inputs.items() if k.startswith("dynamics.")}
    t = load_trajectory(files["trajectory"])
    steps = pd.read_csv(files["steps"])
    rough = pd.read_csv(files["roughness"])
    tokens = pd.read_csv(files["next_token"], keep_default_na=False)
    fixed = rough[rough["plane"] == "fixed"]
    both = sorted(set(fixed[fixed.data == "phrase"].step) & set(fixed[fixed.data == "corpus"].step))
    pairs = [
        {
            "step": s,
            **{
                f"{n}_{col}": fixed[(fixed.data == n) & (fixed.step == s)][col].iloc[0]
                for n in DATASETS
                for col in ("roughness", "quadratic_residual", "local_minima")
            },
        }
        for s in both
    ]
    settings = list(dict.fromkeys(tokens["setting"]))
    top = {s: tokens[tokens.setting == s].sort_values("rank").to_dict("records") for s in settings}
    last = steps.iloc[-1].to_dict()
    first_fixed = fixed[(fixed.step == int(steps.step.iloc[0]))]
    return {
        "run": t["attrs"]["provenance"]["run"],
        "train_data": t["attrs"]["train_data"],
        "stopped": t["attrs"]["provenance"]["run"]["stopped"],
        "prompt": t["attrs"]["prompt"],
        "pca_centred": t["attrs"]["pca_centred"],
        "explained_variance_ratio": t["pca/explained_variance_ratio"][:2].tolist(),
        "targets": t["attrs"]["provenance"]["run"]["targets"],
        "n_parameters": t["attrs"]["provenance"]["directions_recipe"]["n_parameters"],
        "steps": steps.to_dict("records"),
        "last": last,
        "fixed_min": {r["data"]: r["loss_min"] for r in first_fixed.to_dict("records")},
        "roughness": rough.to_dict("records"),
        "pairs": pairs,
        "smoother": _smoother(pairs, "roughness"),
        "smoother_residual": _smoother(pairs, "quadratic_residual"),
        "corpus_source": t["attrs"]["provenance"]["corpus"]["path"],
        "next_token": {"settings": settings, "top": top, "k": int(tokens["rank"].max())},
        "has_curvature": "lambda_max" in steps,
        "pca_gap": float(np.nanmax(np.abs(steps["pca_loss"] - steps[f"loss_{t['attrs']['train_data']}"]))),
        "figures": {name: data_uri(files[f"{name}_png"]) for name in FIGURES},
        "animation": os.path.relpath(files["slices_html"], out_dir),
    }
