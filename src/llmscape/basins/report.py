"""A basin study's tables and figures.

``radii.csv``: one row per layer entry, direction and metric: the radius on each side, the
direction's radius (the nearer wall), censoring, evaluations, and (loss rows) the curvature
check. ``summary.csv``: one row per layer entry and metric: the random directions' radii as
a distribution (median with a percentile-bootstrap confidence interval, quartiles, min, max,
censored count), each other direction's radius, the ratio of the most-case (median random)
to the worst-case radius, and the search's evaluations per direction against a dense 1-D
grid of the same precision.

The figure follows Chen et al. 2025: per layer entry (rows) and metric (columns), the metric
along every random direction (thin grey), the worst-case and checkpoint directions (bold),
the most-case basin shaded (median radius on each side) and the tolerance as a dashed line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from llmscape.basins.search import bootstrap_median, dense_grid_points
from llmscape.plots import _save, plt

COLOURS = {"worst": "C3", "checkpoint": "C2", "hessian": "C4"}


def _layer_label(attrs: dict) -> str:
    t = attrs["target"]
    where = "whole model" if t["layer_index"] is None else f"layer {t['layer_index']}"
    return f"{t['layer']} ({where}, {t['n_parameters']:,} parameters)"


def radii_table(loaded: list[tuple[dict, list]]) -> pd.DataFrame:
    rows = []
    for attrs, results in loaded:
        model = attrs["provenance"]["config"]["model"]["name"]
        for r in results:
            for c in attrs["criteria"]:
                m = c["metric"]
                plus, minus = r.search.radius[m]["plus"], r.search.radius[m]["minus"]
                row = {
                    "model": model,
                    "basin": attrs["provenance"]["config"]["basin"],
                    "layer": attrs["target"]["layer"],
                    "layer_index": attrs["target"]["layer_index"],
                    "n_parameters": attrs["target"]["n_parameters"],
                    "direction": r.label,
                    "method": r.method,
                    "metric": m,
                    "kind": c["kind"],
                    "tolerance": c["tolerance"],
                    "centre": attrs["centre"][m],
                    "radius_plus": plus,
                    "radius_minus": minus,
                    "radius": min(plus, minus),
                    "censored": bool(r.search.censored[m]["plus" if plus <= minus else "minus"]),
                    "evaluations": r.search.n_evals,
                    "precision": r.search.precision,
                    "max_radius": r.search.max_radius,
                }
                if m == "loss" and r.check:
                    row |= {f"check_{k}": r.check[k] for k in ("h", "richardson", "dHd", "ratio", "flagged")}
                rows.append(row)
    return pd.DataFrame(rows)


def summary_table(radii: pd.DataFrame, loaded: list[tuple[dict, list]], job_config: dict) -> pd.DataFrame:
    b = job_config["bootstrap"]
    rows = []
    for (layer, metric), group in radii.groupby(["layer", "metric"], sort=False):
        rnd = group[group["method"] == "random"]
        values = rnd["radius"].to_numpy()
        lo, hi = bootstrap_median(values, b["samples"], b["level"], b["seed"])
        median = float(np.median(values)) if values.size else float("nan")
        first = group.iloc[0]
        row = {
            "model": first["model"],
            "basin": first["basin"],
            "layer": layer,
            "layer_index": first["layer_index"],
            "n_parameters": first["n_parameters"],
            "metric": metric,
            "tolerance": first["tolerance"],
            "centre": first["centre"],
            "n_random": int(values.size),
            "median": median,
            "ci_low": lo,
            "ci_high": hi,
            "ci_level": b["level"],
            "q1": float(np.quantile(values, 0.25)) if values.size else float("nan"),
            "q3": float(np.quantile(values, 0.75)) if values.size else float("nan"),
            "min": float(values.min()) if values.size else float("nan"),
            "max": float(values.max()) if values.size else float("nan"),
            "n_censored": int(rnd["censored"].sum()),
        }
        others = group[group["method"] != "random"]
        worst = others[others["method"] == "worst"]
        row["worst_radius"] = float(worst["radius"].min()) if len(worst) else float("nan")
        row["most_over_worst"] = (
            median / row["worst_radius"] if len(worst) and row["worst_radius"] > 0 else float("nan")
        )
        for _, o in others.iterrows():
            row[f"radius:{o['direction']}"] = o["radius"]
        precision, max_radius = first["precision"], first["max_radius"]
        row["evaluations_per_direction"] = float(rnd["evaluations"].mean()) if len(rnd) else float("nan")
        row["dense_grid_points"] = dense_grid_points(median, precision, max_radius) if median > 0 else 0
        rows.append(row)
    return pd.DataFrame(rows)


def _threshold(centre: float, kind: str, tolerance: float) -> float:
    return centre + tolerance if kind == "rise" else centre - tolerance


def plot_basins(loaded: list[tuple[dict, list]], summary: pd.DataFrame, job_config: dict, png, pdf) -> None:
    """Chen et al.'s figure: metric against a, thin random curves, bold other directions, shaded basin."""
    layers: dict[str, tuple[dict, list]] = {}
    for attrs, results in loaded:
        entry = layers.setdefault(attrs["target"]["layer"], (attrs, []))
        entry[1].extend(results)
    criteria = loaded[0][0]["criteria"]
    n_rows, n_cols = len(layers), len(criteria)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(4.3 * n_cols, 3.4 * n_rows + 0.6), squeeze=False)
    model = loaded[0][0]["provenance"]["config"]["model"]["name"]
    for i, (layer, (attrs, results)) in enumerate(layers.items()):
        for j, c in enumerate(criteria):
            ax = axes[i, j]
            m = c["metric"]
            row = summary[(summary["layer"] == layer) & (summary["metric"] == m)].iloc[0]
            centre = attrs["centre"][m]
            reach = [row["median"]] + [r.search.radius_of(m) for r in results if r.method != "random"]
            span = 1.6 * max([x for x in reach if np.isfinite(x) and x > 0] or [1.0])
            rnd = [r for r in results if r.method == "random"]
            for r in rnd:
                a, v = r.search.curve(m)
                ax.plot(a, v, "-", color="0.55", lw=0.6, alpha=0.7)
            by = {r.label: r for r in rnd}
            plus = np.median([by[k].search.radius[m]["plus"] for k in by]) if by else np.nan
            minus = np.median([by[k].search.radius[m]["minus"] for k in by]) if by else np.nan
            if np.isfinite(plus) and np.isfinite(minus):
                ax.axvspan(-minus, plus, color="C0", alpha=0.12, lw=0, label="most-case basin (median)")
            for r in results:
                if r.method == "random":
                    continue
                a, v = r.search.curve(m)
                ax.plot(a, v, "-o", color=COLOURS.get(r.method, "C1"), lw=2, ms=2.5, label=f"{r.label} ({r.method})")
            ax.axhline(_threshold(centre, c["kind"], c["tolerance"]), color="k", ls="--", lw=0.7, label="tolerance")
            ax.plot([0], [centre], "k+", ms=8)
            ax.set_xlim(-span, span)
            if c["kind"] == "rise":
                ax.set_ylim(centre - 2 * c["tolerance"], centre + 6 * c["tolerance"])
            else:
                ax.set_ylim(-0.02, 1.02)
            ax.set_xlabel("a (coefficient of the direction)")
            ax.set_ylabel(m)
            ratio = row["most_over_worst"]
            tail = f"; most/worst {ratio:.3g}" if np.isfinite(ratio) else ""
            title = f"{layer}: median r {row['median']:.3g} [{row['ci_low']:.3g}, {row['ci_high']:.3g}]{tail}"
            ax.set_title(title, fontsize=8)
        axes[i, 0].annotate(
            _layer_label(attrs), (0, 1.12), xycoords="axes fraction", fontsize=9, fontweight="bold", va="bottom"
        )
    handles, labels = axes[0, 0].get_legend_handles_labels()
    seen = dict(zip(labels, handles, strict=True))
    n = int(summary["n_random"].max())
    fig.suptitle(
        f"{model} basins ({job_config['basin']}): {n} random directions (grey), "
        f"norm {job_config['random']['norm']}; loss axis clipped at the centre + 6 x tolerance",
        fontsize=9,
    )
    fig.legend(seen.values(), seen.keys(), loc="lower center", ncol=min(len(seen), 5), fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 0.96))
    _save(fig, png, pdf)


def _normalized(values: np.ndarray, higher_is_better: bool) -> np.ndarray:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.full_like(values, np.nan)
    lo, hi = finite.min(), finite.max()
    z = (values - lo) / (hi - lo) if hi > lo else np.ones_like(values)
    return z if higher_is_better else 1 - z


def plot_capability_landscape(ls, title: str, png: str | Path, pdf: str | Path) -> None:
    """Each metric's own surface (loss, every capability's accuracy), then all of them normalized to
    [0, 1] (1 = best: lowest loss, highest accuracy) in one panel (Chen et al.'s landscape_all)."""
    metrics = [("loss", ls.loss, False)] + [
        (k, v, True) for k, v in sorted(ls.extra.items()) if k.endswith("/accuracy")
    ]
    n = len(metrics) + 1
    fig, axes = plt.subplots(1, n, figsize=(4.0 * n, 3.6), squeeze=False)
    axes = axes[0]
    two_d = len(ls.axes) == 2
    for ax, (name, grid, _) in zip(axes, metrics, strict=False):
        if two_d:
            a, b = ls.axes
            z = np.where(np.isfinite(grid), grid, np.nan)
            cs = ax.contourf(b, a, z, levels=12, cmap="viridis")
            fig.colorbar(cs, ax=ax, shrink=0.8)
            ax.set_xlabel(r"$\beta$")
            ax.set_ylabel(r"$\alpha$")
        else:
            ax.plot(ls.axes[0], grid, "-o", ms=2)
            ax.set_xlabel(r"$\alpha$")
        ax.plot([0], [0] if two_d else [np.nan], "r+")
        ax.set_title(name, fontsize=9)
    ax = axes[-1]
    for k, (name, grid, better_high) in enumerate(metrics):
        z = _normalized(np.asarray(grid, dtype=float), better_high)
        if two_d:
            a, b = ls.axes
            ax.contour(b, a, z, levels=[0.5, 0.9], colors=[f"C{k}"], linestyles=["--", "-"], linewidths=1.2)
            ax.plot([], [], color=f"C{k}", label=name)
        else:
            ax.plot(ls.axes[0], z, "-", color=f"C{k}", label=name)
    ax.set_title("all, normalized (1 = best)" + (": contours 0.9 (solid), 0.5 (dashed)" if two_d else ""), fontsize=8)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _save(fig, png, pdf)


def paper_context(inputs: dict, config: dict, out_dir: Path) -> dict | None:
    """The Basins section's context from the paper rule's ``_basin.*`` inputs (basins_common.smk,
    basin_paper_inputs): the probe sets' table, each basin study's summary, radii and figure, and
    every capability figure of a landscape study. None when the config has neither probes nor basins."""
    from llmscape.paper import data_uri

    if "_basin.section" not in inputs:
        return None
    probes = pd.read_csv(inputs["_basin.probes"]).to_dict("records") if "_basin.probes" in inputs else []
    studies = {}
    for name, section in config.get("basins", {}).items():
        summary = pd.read_csv(inputs[f"_basin.{name}.summary"])
        radii = pd.read_csv(inputs[f"_basin.{name}.radii"])
        checked = radii[(radii["metric"] == "loss") & radii.get("check_ratio", pd.Series(dtype=float)).notna()]
        others = [c.removeprefix("radius:") for c in summary.columns if c.startswith("radius:")]
        directions = radii[radii["method"] != "random"].drop_duplicates("direction")
        studies[name] = {
            "config": section,
            "rows": summary.to_dict("records"),
            "others": others,
            "methods": dict(zip(directions["direction"], directions["method"], strict=True)),
            "figure": data_uri(inputs[f"_basin.{name}.figure"]),
            "n_checked": int(len(checked)),
            "n_flagged": int(checked["check_flagged"].astype(bool).sum()) if len(checked) else 0,
            "check_ratio_median": float(checked["check_ratio"].median()) if len(checked) else float("nan"),
            "check_ratio_range": (
                (float(checked["check_ratio"].min()), float(checked["check_ratio"].max())) if len(checked) else None
            ),
        }
    capability = []
    for key, png in inputs.items():
        if key.startswith("_basin.capabilities."):
            study, landscape = key.removeprefix("_basin.capabilities.").split(".", 1)
            capability.append({"study": study, "landscape": landscape, "png": data_uri(png)})
    return {"probes": probes, "studies": studies, "capability_figures": capability}
