"""The geometry section's figures, the sharpness table and the paper's context, all read from its result files.

Figures (``figures/geometry/``, PNG and PDF; HTML with plotly.js inlined, offline):
``exact`` (the tiny model's exact eigenvalue histogram against the SLQ density, the Lanczos
top-k, lambda_min and the Hutchinson trace / n with +-2 SE on the same eigenvalue axis; the
moments beside), ``curves`` (+ ``.html``: per layer entry the loss along lambda_max,
lambda_min and the near-zero direction, each with its quadratic prediction dashed),
``gradients`` (relative gradient norms per matrix across layers, per layer),
``attention-<layer>`` (weights and scores per head; ``attention.html``: every layer and head,
chosen from a menu), ``heads`` (effective rank and condition number per head and matrix).
Tables (``tables/geometry/``): ``sharpness.csv`` (llmscape.geometry.sharpness), ``curves.csv``
(one row per layer entry and direction: curvature, residual, the loss at both ends against
the quadratic prediction there).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from llmscape.plots import DPI, PDF_METADATA, PNG_METADATA  # also selects the Agg backend

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c")  # matplotlib's C0, C1, C2
LABELS = {"lambda_max": "top (lambda_max)", "lambda_min": "most negative (lambda_min)", "near_zero": "near zero"}


def _save(fig, png, pdf) -> None:
    import matplotlib.pyplot as plt

    fig.savefig(png, dpi=DPI, metadata=PNG_METADATA)
    fig.savefig(pdf, metadata=PDF_METADATA)
    plt.close(fig)


def _html(fig, path) -> None:
    fig.write_html(path, include_plotlyjs=True, full_html=True, div_id="llmscape-geometry")


# ------------------------------------------------------------------------------ exact


def plot_exact(exact: dict, spectrum, png, pdf) -> None:
    import matplotlib.pyplot as plt

    lam = exact["eigenvalues"]
    n = len(lam)
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [2.2, 1]})
    heights, _, _ = ax.hist(lam, bins=80, density=True, color="0.75", label=f"exact eigenvalues (n = {n})")
    if spectrum.density is not None:
        ax.plot(spectrum.density.grid, spectrum.density.density, "C0", lw=1.2, label="SLQ density")
    for i, v in enumerate(spectrum.eigenvalues):
        ax.axvline(v, color="C3", ls="--", lw=1, label="Lanczos top-k" if i == 0 else None)
    ax.axvline(spectrum.lambda_min, color="C2", ls=":", lw=1.2, label="Lanczos lambda_min")
    ax.set_yscale("log")
    # the broadened density falls to ~0 between its nodes: show it down to a tenth of one eigenvalue's bin
    ax.set_ylim(bottom=heights[heights > 0].min() / 10)
    y = ax.get_ylim()[1] / 3
    if spectrum.trace is not None:
        ax.errorbar([spectrum.trace.trace / n], [y], xerr=[2 * spectrum.trace.se / n], fmt="s", color="C1",
                    capsize=4, label="Hutchinson tr/n ± 2 SE")  # fmt: skip
    ax.plot([lam.mean()], [y], "k|", ms=14, mew=2, label="exact tr/n")
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density (log)")
    ax.legend(fontsize=7, loc="upper center")
    ax.set_title(f"tiny Llama, exact Hessian over {n} parameters vs the estimators", fontsize=9)
    if "slq_moments" in exact:
        j = exact["moment_powers"]
        ratio = exact["slq_moments"] / exact["exact_moments"]
        err = 2 * exact["slq_moment_se"] / np.abs(exact["exact_moments"])
        bx.errorbar(j, ratio, yerr=err, fmt="o", capsize=4)
        bx.axhline(1, color="k", lw=0.5)
        bx.set_xticks(j)
        bx.set_xlabel("moment j")
        bx.set_ylabel("SLQ / exact  (± 2 SE)")
        bx.set_title("moments 1/n tr(H^j)", fontsize=9)
    fig.tight_layout()
    _save(fig, png, pdf)


# ----------------------------------------------------------------------------- curves


def _curve_label(c: dict, name: str) -> str:
    return f"{LABELS[name]}: λ = {c['curvature'][name]:.3g}"


def plot_curves(loaded: list[dict], png, pdf, html) -> None:
    import matplotlib.pyplot as plt
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    n = len(loaded)
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 4), squeeze=False)
    titles = [f"{c['attrs']['provenance']['layer']} (L{c['attrs']['provenance']['layer_index']})" for c in loaded]
    pfig = make_subplots(rows=1, cols=n, subplot_titles=titles)
    for k, (ax, c) in enumerate(zip(axes[0], loaded, strict=True)):
        a = c["axis"]
        measured = np.concatenate([c["loss"][m] for m in c["names"]])
        measured = measured[np.isfinite(measured)]
        fine = np.linspace(a[0], a[-1], 201)  # the quadratic drawn smooth, whatever the grid
        for i, name in enumerate(c["names"]):
            ax.plot(a, c["loss"][name], "-o", ms=2.5, color=f"C{i}", label=_curve_label(c, name))
            quadratic = c["attrs"]["loss_centre"] + c["curvature"][name] * fine**2 / 2
            ax.plot(fine, quadratic, "--", color=f"C{i}", lw=0.8)
            line = {"color": COLORS[i % len(COLORS)]}
            pfig.add_trace(go.Scatter(x=a, y=c["loss"][name], name=f"{titles[k]} {_curve_label(c, name)}", line=line),
                           row=1, col=k + 1)  # fmt: skip
            pfig.add_trace(go.Scatter(x=fine, y=quadratic, name=f"{titles[k]} {LABELS[name]}: L(0) + λa²/2",
                                      line=line | {"dash": "dash"}), row=1, col=k + 1)  # fmt: skip
        if measured.size:
            lo, hi = measured.min(), measured.max()
            pad = 0.1 * max(hi - lo, 1e-3)
            ax.set_ylim(lo - pad, hi + pad)
        ax.axvline(0, color="k", lw=0.4)
        ax.set_xlabel("a (unit direction)")
        ax.set_ylabel("loss")
        ax.set_title(titles[k] + ": measured (solid), L(0) + λa²/2 (dashed)", fontsize=8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, png, pdf)
    pfig.update_layout(title="Loss along extreme-curvature directions", height=500, width=480 * n)
    _html(pfig, html)


def curves_table(loaded: list[dict]) -> pd.DataFrame:
    rows = []
    for c in loaded:
        p = c["attrs"]["provenance"]
        for name in c["names"]:
            loss, q = c["loss"][name], c["quadratic"][name]
            rows.append({"study": p["study"], "layer": p["layer"], "layer_index": p["layer_index"],
                         "direction": name, "curvature": c["curvature"][name], "residual": c["residual"][name],
                         "loss_centre": c["attrs"]["loss_centre"], "a_min": c["axis"][0], "a_max": c["axis"][-1],
                         "loss_at_min": loss[0], "loss_at_max": loss[-1], "quadratic_at_max": q[-1],
                         "rise_at_max": loss[-1] - c["attrs"]["loss_centre"],
                         "predicted_rise_at_max": q[-1] - c["attrs"]["loss_centre"]})  # fmt: skip
    return pd.DataFrame(rows)


# -------------------------------------------------------------------------- gradients


def plot_gradients(table: pd.DataFrame, layers: pd.DataFrame, title: str, png, pdf) -> None:
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.2))
    inside = table[table.layer.notna() & (table.n_params > 0)]
    for matrix, g in inside.groupby("matrix", sort=True):
        ax.plot(g.layer.astype(int), g.relative, "-o", ms=2.5, label=matrix)
    ax.set_yscale("log")
    ax.set_xlabel("decoder layer")
    ax.set_ylabel("||grad|| / ||W||  (log)")
    ax.set_title("per tensor", fontsize=9)
    ax.legend(fontsize=6, ncol=2)
    lay = layers[layers.part == "layer"]
    bx.bar(lay.layer.astype(int), lay.relative, color="C0")
    bx.set_yscale("log")
    bx.set_xlabel("decoder layer")
    bx.set_title("per layer (all its tensors)", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, png, pdf)


# -------------------------------------------------------------------------- attention


def _masked_image(ax, m: np.ndarray, cmap: str):
    return ax.imshow(np.ma.masked_invalid(m), cmap=cmap, interpolation="nearest")


def plot_attention_layer(att: dict, layer: int, png, pdf) -> None:
    import matplotlib.pyplot as plt

    w, s, kv = (att["layers"][layer][k] for k in ("weights", "scores", "kv_head"))
    heads, t = w.shape[0], w.shape[1]
    fig, axes = plt.subplots(2, heads, figsize=(2.1 * heads, 4.6), squeeze=False)
    labels = [repr(x)[1:-1] for x in att["tokens"]] if t <= 16 else None
    for h in range(heads):
        for row, (m, cmap, what) in enumerate([(w[h], "viridis", "weights"), (s[h], "magma", "scores")]):
            ax = axes[row, h]
            _masked_image(ax, m, cmap)
            ax.set_title(f"head {h} (kv {kv[h]}) {what}", fontsize=6)
            ax.set_xticks([])
            ax.set_yticks([])
            if labels and h == 0:
                ax.set_yticks(range(t), labels, fontsize=4)
    fig.suptitle(f"layer {layer}: attention weights (top) and pre-softmax scores (bottom, masked blank)", fontsize=9)
    fig.tight_layout()
    _save(fig, png, pdf)


def plotly_attention(att: dict, html) -> None:
    """Every layer, head and kind as one heatmap, chosen from a dropdown menu."""
    import plotly.graph_objects as go

    fig = go.Figure()
    buttons = []
    tokens = [f"{i}:{x!r}" for i, x in enumerate(att["tokens"])]
    traces = [(layer, h, kind) for layer, m in att["layers"].items()
              for h in range(m["weights"].shape[0]) for kind in ("weights", "scores")]  # fmt: skip
    for i, (layer, h, kind) in enumerate(traces):
        z = att["layers"][layer][kind][h]
        fig.add_trace(go.Heatmap(z=np.where(np.isfinite(z), z, None).tolist(), x=tokens, y=tokens, visible=i == 0,
                                 colorscale="Viridis" if kind == "weights" else "Magma"))  # fmt: skip
        kv = att["layers"][layer]["kv_head"][h]
        buttons.append({"label": f"layer {layer} head {h} (kv {kv}) {kind}", "method": "update",
                        "args": [{"visible": [j == i for j in range(len(traces))]}]})  # fmt: skip
    fig.update_layout(updatemenus=[{"buttons": buttons, "x": 0, "y": 1.15, "xanchor": "left"}],
                      title=f"Attention for {att['attrs']['prompt']!r}", yaxis={"autorange": "reversed"},
                      width=800, height=800)  # fmt: skip
    _html(fig, html)


def plot_heads(table: pd.DataFrame, png, pdf) -> None:
    import matplotlib.pyplot as plt

    layers = list(dict.fromkeys(table.layer))
    fig, axes = plt.subplots(2, len(layers), figsize=(4.5 * len(layers), 6), squeeze=False)
    for k, layer in enumerate(layers):
        g = table[table.layer == layer]
        for i, (matrix, m) in enumerate(g.groupby("matrix", sort=False)):
            x = m["head"].to_numpy() + (i - 1.5) * 0.2
            axes[0, k].bar(x, m.erank, width=0.2, label=matrix, color=f"C{i}")
            axes[1, k].bar(x, m.condition_number, width=0.2, color=f"C{i}")
        axes[0, k].axhline(g["rank"].max(), color="k", lw=0.5, ls=":")
        axes[0, k].set_title(f"layer {layer}: effective rank (dotted: full rank)", fontsize=8)
        axes[1, k].set_yscale("log")
        axes[1, k].set_title(f"layer {layer}: condition number", fontsize=8)
        axes[1, k].set_xlabel("query head (K, V: its kv head's)")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    _save(fig, png, pdf)


# ------------------------------------------------------------------------ the report job


def sharpness_rows(spectra: list[str], dynamics_spectra: list[str]) -> list[dict]:
    from llmscape.curvature import load_spectrum
    from llmscape.geometry.sharpness import spectrum_row

    rows = []
    for p in spectra:
        s, prov = load_spectrum(p)
        rows.append(spectrum_row(prov["study"], f"{prov['layer']} (L{prov['layer_index']})", s))
    for p in dynamics_spectra:
        s, prov = load_spectrum(p)
        rows.append(spectrum_row("dynamics", f"step {prov['step']}", s))
    return rows


def write_report(inputs: dict, outputs: dict, section: dict) -> None:
    """Every figure and table of the module docstring whose inputs the rule was given."""
    from llmscape.curvature import load_spectrum
    from llmscape.geometry.attention import load_attention
    from llmscape.geometry.exact import load_exact
    from llmscape.geometry.extreme import load_curves
    from llmscape.geometry.sharpness import sharpness_table

    if "exact" in inputs:
        plot_exact(load_exact(inputs["exact"]), load_spectrum(inputs["estimate"])[0], outputs["exact_png"],
                   outputs["exact_pdf"])  # fmt: skip
    if inputs.get("curves"):
        loaded = [load_curves(p) for p in inputs["curves"]]
        plot_curves(loaded, outputs["curves_png"], outputs["curves_pdf"], outputs["curves_html"])
        curves_table(loaded).to_csv(outputs["curves_csv"], index=False, float_format="%.6g")
    if "attention" in inputs:
        att = load_attention(inputs["attention"])
        for pos, layer in zip(att["attrs"]["positions"], att["attrs"]["position_layers"], strict=True):
            plot_attention_layer(att, layer, outputs[f"attention_{pos}_png"], outputs[f"attention_{pos}_pdf"])
        plotly_attention(att, outputs["attention_html"])
        plot_heads(pd.read_csv(inputs["heads"]), outputs["heads_png"], outputs["heads_pdf"])
    if "sharpness_csv" in outputs:
        s = section["sharpness"]
        rows = sharpness_rows(inputs.get("spectra", []), inputs.get("dynamics_spectra", []))
        sharpness_table(rows, s["saddle_ratio"], s["negative_mass"]).to_csv(
            outputs["sharpness_csv"], index=False, float_format="%.6g"
        )


# ------------------------------------------------------------------------------ paper


def paper_context(inputs: dict, config: dict, out_dir: str | Path) -> dict | None:
    """The paper's ``geometry`` variable from the paper rule's ``geometry.*`` inputs (None without any)."""
    from llmscape.paper import data_uri

    files = {k.removeprefix("geometry."): v for k, v in inputs.items() if k.startswith("geometry.")}
    if not files:
        return None
    g = config["geometry"]
    ctx: dict = {"config": g, "description": g["description"]}

    def records(name):
        return pd.read_csv(files[name]).replace({np.nan: None}).to_dict("records") if name in files else None

    if "exact_csv" in files:
        from llmscape.geometry.exact import load_exact

        e = load_exact(files["exact"])
        ctx["exact"] = {"rows": records("exact_csv"), "figure": data_uri(files["exact_png"]),
                        "n_params": int(e["attrs"]["n_params"]), "targets": e["attrs"]["targets"],
                        "train_loss": [float(e["train_losses"][0]), float(e["attrs"]["train_loss_final"])],
                        "vocab": len(e["vocab_ids"]), "n_negative": int((e["eigenvalues"] < 0).sum()),
                        "seconds": float(e["attrs"]["seconds_hessian"])}  # fmt: skip
    if "curves_csv" in files:
        ctx["curves"] = {"rows": records("curves_csv"), "figure": data_uri(files["curves_png"]),
                         "html": os.path.relpath(files["curves_html"], out_dir)}  # fmt: skip
    if "gradients_csv" in files:
        t = pd.read_csv(files["gradients_csv"])
        top = t.sort_values("relative", ascending=False).head(5)
        ctx["gradients"] = {"layers": records("gradient_layers_csv"), "top": top.to_dict("records"),
                            "total": float(np.sqrt((t.grad_norm**2).sum())), "n_tensors": len(t),
                            "figure": data_uri(files["gradients_png"])}  # fmt: skip
    if "heads_csv" in files:
        h = pd.read_csv(files["heads_csv"])
        summary = h.groupby(["layer", "matrix"], sort=False).agg(erank=("erank", "median"),
                                                                  rank=("rank", "max"),
                                                                  kappa=("condition_number", "median"))  # fmt: skip
        figures = [k for k in files if k.startswith("attention_") and k.endswith("_png")]  # in config order
        ctx["attention"] = {"summary": summary.reset_index().to_dict("records"),
                            "figures": [(k.split("_")[1], data_uri(files[k])) for k in figures],
                            "heads": data_uri(files["heads_png"]),
                            "html": os.path.relpath(files["attention_html"], out_dir),
                            "prompt": g["attention"]["prompt"]}  # fmt: skip
    if "sharpness_csv" in files:
        ctx["sharpness"] = {"rows": records("sharpness_csv"), "rule": g["sharpness"]}
    return ctx
