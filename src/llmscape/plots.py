"""Figures: static matplotlib (PNG, PDF; byte-identical across reruns) and plotly HTML.

In contour maps and surfaces, losses that overflowed (inf/NaN) or rise far above the
minimum are clipped to ``min + clip`` so one bad corner cannot flatten the rest of the
picture; the title says how many points were clipped. 1-D curves are never clipped
(a clipped curve shows a plateau that is not there): when they span more than ``clip``
nats the loss axis is logarithmic, and non-finite points are marked on the top edge.
Contour levels and colour-bar ticks are round numbers. Legends sit outside the axes.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from llmscape.store import Landscape  # noqa: E402

PDF_METADATA = {"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None}
PNG_METADATA = {"Software": None}
DPI = 120
ALPHA, BETA = r"$\alpha$ (direction 1)", r"$\beta$ (direction 2)"


def clipped(loss: np.ndarray, clip: float) -> tuple[np.ndarray, int]:
    """Loss with non-finite and far-too-high values set to the ceiling; and how many were."""
    finite = loss[np.isfinite(loss)]
    if finite.size == 0:
        return np.zeros_like(loss), loss.size
    ceiling = finite.min() + clip
    bad = ~np.isfinite(loss) | (loss > ceiling)
    return np.where(bad, ceiling, loss), int(bad.sum())


def _save(fig, png: str | Path, pdf: str | Path | None = None) -> None:
    fig.savefig(png, dpi=DPI, metadata=PNG_METADATA)
    if pdf is not None:
        fig.savefig(pdf, metadata=PDF_METADATA)
    plt.close(fig)


def round_levels(low: float, high: float, n: int = 20) -> np.ndarray:
    """About ``n`` contour levels at round numbers (steps of 1, 2, 2.5 or 5 x 10^k) covering [low, high]."""
    if not high > low:
        high = low + 1e-6 * max(1.0, abs(low))
    return MaxNLocator(nbins=n, steps=[1, 2, 2.5, 5, 10]).tick_values(low, high)


def _draw_contour(ax, ls: Landscape, clip: float, title: str, levels: np.ndarray | None = None) -> None:
    """Contour map; ``levels`` shared by several panels, else round levels over this map's range."""
    z, n_clipped = clipped(ls.loss, clip)
    a, b = ls.axes
    if levels is None:
        levels = round_levels(z.min(), z.max())
    cs = ax.contourf(b, a, z, levels=levels, cmap="viridis", extend="both")
    ax.contour(b, a, z, levels=levels, colors="k", linewidths=0.3)
    ax.plot([0], [0], "r+", markersize=8)
    ax.set_xlabel(BETA)
    ax.set_ylabel(ALPHA)
    ax.set_title(title + (f" ({n_clipped} clipped)" if n_clipped else ""), fontsize=9)
    bar = ax.figure.colorbar(cs, ax=ax, shrink=0.8)
    bar.set_ticks(MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]).tick_values(levels[0], levels[-1]))


def _draw_curve(ax, ls: Landscape, clip: float, title: str) -> None:
    """The loss along one direction, unclipped: log axis when it spans more than ``clip`` nats."""
    a, z = ls.axes[0], ls.loss
    finite = np.isfinite(z)
    ax.plot(a[finite], z[finite], "-o", markersize=2)
    ax.axvline(0, color="r", lw=0.5)
    ax.set_xlabel(ALPHA)
    note = ""
    if finite.any() and z[finite].max() - z[finite].min() > clip and z[finite].min() > 0:
        ax.set_yscale("log")
        note = ", log scale"
    if not finite.all():
        top = ax.get_ylim()[1]
        ax.plot(a[~finite], np.full((~finite).sum(), top), "rx", clip_on=False)
        note += f", {(~finite).sum()} non-finite (x)"
    ax.set_ylabel("loss" + (" (log scale)" if note.startswith(", log") else ""))
    ax.set_title(title + (f" ({note[2:]})" if note else ""), fontsize=9)


def plot_landscape(ls: Landscape, title: str, png: str | Path, pdf: str | Path, clip: float) -> None:
    """2-D: 3-D surface beside a contour map; 1-D: the loss curve."""
    if len(ls.axes) == 1:
        fig, ax = plt.subplots(figsize=(5, 4))
        _draw_curve(ax, ls, clip, title)
    else:
        fig = plt.figure(figsize=(11, 4.5))
        ax3 = fig.add_subplot(1, 2, 1, projection="3d")
        z, _ = clipped(ls.loss, clip)
        bb, aa = np.meshgrid(ls.axes[1], ls.axes[0])
        ax3.plot_surface(bb, aa, z, cmap="viridis", linewidth=0, antialiased=True)
        ax3.set_xlabel(r"$\beta$")
        ax3.set_ylabel(r"$\alpha$")
        ax3.set_zlabel("loss")
        ax3.set_title(title, fontsize=9)
        _draw_contour(fig.add_subplot(1, 2, 2), ls, clip, "contour")
    fig.tight_layout()
    _save(fig, png, pdf)


def plot_comparison(
    panels: list[tuple[str, Landscape]],
    png: str | Path,
    pdf: str | Path,
    clip: float,
    n_cols: int,
    shared_scale: bool = False,
) -> None:
    """Several landscapes side by side (one contour or curve each), ``n_cols`` per row.

    With ``shared_scale`` every contour map uses one colour scale (the lowest loss of all
    panels to that plus ``clip``), so colours compare across panels; otherwise each has its
    own. The figure's title says which."""
    n_rows = -(-len(panels) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(4.2 * n_cols, 3.6 * n_rows + 0.4), squeeze=False)
    maps = [ls for _, ls in panels if len(ls.axes) == 2]
    levels = None
    if shared_scale and maps:
        lows = [clipped(ls.loss, clip)[0].min() for ls in maps]
        highs = [clipped(ls.loss, clip)[0].max() for ls in maps]
        levels = round_levels(min(lows), min(max(highs), min(lows) + clip))
    for ax, (title, ls) in zip(axes.ravel(), panels, strict=False):
        if len(ls.axes) == 1:
            _draw_curve(ax, ls, clip, title)
        else:
            _draw_contour(ax, ls, clip, title, levels)
    for ax in axes.ravel()[len(panels) :]:
        ax.axis("off")
    if maps:
        scale = "one colour scale shared by all maps" if shared_scale else "each map has its own colour scale"
        fig.suptitle(scale, fontsize=9)
    fig.tight_layout()
    _save(fig, png, pdf)


def plotly_landscape(ls: Landscape, title: str, html: str | Path) -> None:
    """Interactive surface (viridis) with plotly.js inlined, so it opens offline."""
    import plotly.graph_objects as go

    if len(ls.axes) == 1:
        fig = go.Figure(go.Scatter(x=ls.axes[0], y=ls.loss, mode="lines+markers"))
        fig.update_layout(xaxis_title="alpha", yaxis_title="loss")
    else:
        z = np.where(np.isfinite(ls.loss), ls.loss, np.nan)  # JSON has no inf
        fig = go.Figure(go.Surface(x=ls.axes[1], y=ls.axes[0], z=z, colorscale="Viridis"))
        fig.update_layout(scene={"xaxis_title": "beta", "yaxis_title": "alpha", "zaxis_title": "loss"})
    fig.update_layout(title=title, width=800, height=700)
    # A fixed div id keeps reruns byte-identical (plotly draws a random one otherwise).
    fig.write_html(html, include_plotlyjs=True, full_html=True, div_id="llmscape-landscape")


def plot_spectra(spectra: list, png: str | Path, pdf: str | Path) -> None:
    """Per layer entry: top eigenvalues, Hutchinson trace (+-2 SE), SLQ density, lambda_max/|lambda_min|."""
    labels = [label for label, _ in spectra]
    x = np.arange(len(spectra))
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    ax = axes[0, 0]
    for i, (_, s) in enumerate(spectra):
        ax.plot([i] * len(s.eigenvalues), s.eigenvalues, "o", color="C0")
        if s.lambda_min is not None:
            ax.plot([i], [s.lambda_min], "v", color="C3")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_title("top eigenvalues (o) and lambda_min (v)", fontsize=9)
    ax = axes[0, 1]
    ax.errorbar(x, [s.trace.trace for _, s in spectra], yerr=[2 * s.trace.se for _, s in spectra], fmt="o", capsize=3)
    ax.set_title("Hutchinson trace +- 2 SE", fontsize=9)
    ax = axes[1, 0]
    for label, s in spectra:
        ax.plot(s.density.grid, s.density.density, label=label)
    ax.set_yscale("log")
    ax.set_ylim(bottom=1e-8)
    ax.set_xlabel("eigenvalue")
    ax.set_title("spectral density (SLQ)", fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax = axes[1, 1]
    ax.bar(x, [s.ratio if s.ratio is not None else np.nan for _, s in spectra])
    ax.set_title("lambda_max / |lambda_min|", fontsize=9)
    for ax in (axes[0, 0], axes[0, 1], axes[1, 1]):
        ax.set_xticks(x, labels, fontsize=8)
    fig.tight_layout()
    _save(fig, png, pdf)


def plot_weight_spectra(table, png: str | Path, pdf: str | Path) -> None:
    """Largest singular value and condition number per layer, one line per matrix kind."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for matrix, rows in table.groupby("matrix", sort=True):
        rows = rows.sort_values("layer")
        axes[0].plot(rows["layer"], rows["sigma_max"], "-o", markersize=2, label=matrix)
        axes[1].plot(rows["layer"], rows["condition_number"], "-o", markersize=2, label=matrix)
    axes[0].set_title("largest singular value", fontsize=9)
    axes[1].set_title("condition number", fontsize=9)
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("decoder layer")
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    _save(fig, png, pdf)
