"""Figures: static matplotlib (PNG, PDF; byte-identical across reruns) and plotly HTML.

Losses that overflowed (inf/NaN) or rise far above the minimum are clipped to
``min + clip`` so one bad corner cannot flatten the rest of the picture; the
title says how many points were clipped.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

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


def _draw_contour(ax, ls: Landscape, clip: float, title: str) -> None:
    z, n_clipped = clipped(ls.loss, clip)
    a, b = ls.axes
    levels = np.linspace(z.min(), z.max(), 21) if z.max() > z.min() else 5
    cs = ax.contourf(b, a, z, levels=levels, cmap="viridis")
    ax.contour(b, a, z, levels=levels, colors="k", linewidths=0.3)
    ax.plot([0], [0], "r+", markersize=8)
    ax.set_xlabel(BETA)
    ax.set_ylabel(ALPHA)
    ax.set_title(title + (f" ({n_clipped} clipped)" if n_clipped else ""), fontsize=9)
    ax.figure.colorbar(cs, ax=ax, shrink=0.8)


def _draw_curve(ax, ls: Landscape, clip: float, title: str) -> None:
    z, n_clipped = clipped(ls.loss, clip)
    ax.plot(ls.axes[0], z, "-o", markersize=2)
    ax.axvline(0, color="r", lw=0.5)
    ax.set_xlabel(ALPHA)
    ax.set_ylabel("loss")
    ax.set_title(title + (f" ({n_clipped} clipped)" if n_clipped else ""), fontsize=9)


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


def plot_comparison(panels: list[tuple[str, Landscape]], png: str | Path, pdf: str | Path, clip: float,
                    n_cols: int) -> None:
    """Several landscapes side by side (one contour or curve each), ``n_cols`` per row."""
    n_rows = -(-len(panels) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(4.2 * n_cols, 3.6 * n_rows), squeeze=False)
    for ax, (title, ls) in zip(axes.ravel(), panels):
        (_draw_curve if len(ls.axes) == 1 else _draw_contour)(ax, ls, clip, title)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
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
