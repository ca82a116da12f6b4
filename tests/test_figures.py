"""Figures: reproducible bytes, overflow that still plots, offline HTML, summary numbers."""

from __future__ import annotations

import numpy as np
import pytest

from llmscape.plots import clipped, plot_comparison, plot_landscape, plotly_landscape
from llmscape.store import Landscape
from llmscape.summary import basin_radius, describe, interpolate


def bowl(n=21, overflow=False):
    axes = [np.linspace(-1, 1, n), np.linspace(-1, 1, n)]
    a, b = np.meshgrid(*axes, indexing="ij")
    ls = Landscape.empty(axes, 1, {})
    loss = 2.0 + a**2 + b**2
    if overflow:
        loss[0, 0], loss[0, 1] = np.inf, np.nan
    ls.fill(
        np.arange(n * n),
        {
            "loss": loss.ravel(),
            "token_loss": loss.ravel(),
            "accuracy": np.zeros(n * n),
            "per_sequence_loss": loss.reshape(-1, 1),
        },
    )
    return ls


def test_png_and_pdf_are_byte_identical_across_reruns(tmp_path):
    for run in ("a", "b"):
        plot_landscape(bowl(), "bowl", tmp_path / f"{run}.png", tmp_path / f"{run}.pdf", clip=10)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert (tmp_path / "a.pdf").read_bytes() == (tmp_path / "b.pdf").read_bytes()


def test_overflowed_landscape_still_plots(tmp_path):
    ls = bowl(overflow=True)
    z, n = clipped(ls.loss, clip=1.0)
    assert n > 2 and np.isfinite(z).all() and z.max() == pytest.approx(3.0)
    plot_landscape(ls, "overflow", tmp_path / "o.png", tmp_path / "o.pdf", clip=1.0)
    plot_comparison([("x", ls), ("y", bowl())], tmp_path / "c.png", tmp_path / "c.pdf", clip=1.0, n_cols=2)
    plotly_landscape(ls, "overflow", tmp_path / "o.html")
    assert (tmp_path / "o.png").stat().st_size > 1000 and (tmp_path / "c.png").stat().st_size > 1000


def test_html_opens_offline(tmp_path):
    plotly_landscape(bowl(), "bowl", tmp_path / "s.html")
    html = (tmp_path / "s.html").read_text()
    assert 'src="https://' not in html and 'src="http://' not in html
    assert "Viridis" in html or "viridis" in html
    assert len(html) > 1_000_000  # plotly.js is inlined


def test_summary_numbers_on_a_known_bowl():
    ls = bowl(n=41)
    assert interpolate(ls, np.array([[0.0, 0.0], [0.5, 0.0], [2.0, 0.0]]))[:2] == pytest.approx([2.0, 2.25], abs=1e-3)
    assert np.isnan(interpolate(ls, np.array([[2.0, 0.0]]))[0])
    row = describe(ls, radii=[0.5, 1.0], basin_rise=0.25)
    assert row["loss_centre"] == pytest.approx(2.0)
    assert row["rise_r0.5"] == pytest.approx(0.25, abs=3e-3)  # f rises by r^2
    assert row["rise_r1"] == pytest.approx(1.0, abs=3e-3)
    assert row["basin_radius_0.25"] == pytest.approx(0.5, abs=0.01)
    assert np.isnan(basin_radius(ls, rise=5.0))  # basin wider than the grid


def line(values: np.ndarray) -> Landscape:
    a = np.linspace(-1, 1, len(values))
    ls = Landscape.empty([a], 1, {})
    n = len(values)
    ls.fill(
        np.arange(n),
        {"loss": values, "token_loss": values, "accuracy": np.zeros(n), "per_sequence_loss": values[:, None]},
    )
    return ls


def test_a_1d_curve_is_never_clipped_into_a_plateau():
    import matplotlib.pyplot as plt

    from llmscape.plots import _draw_curve

    values = np.array([400.0, 50.0, 3.0, 2.0, 3.0, np.inf, 80.0])
    fig, ax = plt.subplots()
    _draw_curve(ax, line(values), clip=10.0, title="t")
    finite = np.isfinite(values)
    assert np.array_equal(ax.lines[0].get_ydata(), values[finite])  # every finite value as computed
    assert ax.get_yscale() == "log" and "log scale" in ax.get_title()
    marked = ax.lines[-1]
    assert marked.get_xdata().tolist() == [np.linspace(-1, 1, 7)[5]] and "1 non-finite" in ax.get_title()
    fig, ax = plt.subplots()
    _draw_curve(ax, line(np.array([3.0, 2.0, 3.0])), clip=10.0, title="t")
    assert ax.get_yscale() == "linear" and ax.get_title() == "t"
    plt.close("all")


def is_round(step: float) -> bool:
    mantissa = step / 10 ** np.floor(np.log10(step))
    return any(np.isclose(mantissa, m) for m in (1, 2, 2.5, 5, 10))


def test_contour_levels_and_colour_bar_ticks_are_round_numbers():
    import matplotlib.pyplot as plt

    from llmscape.plots import _draw_contour, round_levels

    levels = round_levels(2.0137, 3.9871)
    assert levels[0] <= 2.0137 and levels[-1] >= 3.9871 and is_round(levels[1] - levels[0])
    fig, ax = plt.subplots()
    _draw_contour(ax, bowl(), clip=10.0, title="t")
    ticks = fig.axes[-1].get_yticks()
    assert len(ticks) >= 3 and is_round(ticks[1] - ticks[0])
    assert all(np.isclose(t / (ticks[1] - ticks[0]), round(t / (ticks[1] - ticks[0]))) for t in ticks)
    plt.close("all")


def test_comparison_shares_one_colour_scale_when_asked_and_says_which(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from llmscape import plots

    shifted = bowl()
    shifted.loss += 5.0
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, png, pdf=None: figures.append(fig))
    for shared in (True, False):
        plots.plot_comparison([("a", bowl()), ("b", shifted)], "x.png", "x.pdf", 10.0, 2, shared_scale=shared)
    levels = [[c.levels for c in fig.axes[i].collections if hasattr(c, "levels")][0] for fig in figures for i in (0, 1)]
    assert np.array_equal(levels[0], levels[1]) and levels[0][0] <= 2.0 and levels[0][-1] >= 9.0
    assert not np.array_equal(levels[2], levels[3])
    assert figures[0]._suptitle.get_text() == "one colour scale shared by all maps"
    assert figures[1]._suptitle.get_text() == "each map has its own colour scale"
    plt.close("all")


def test_legends_sit_outside_the_data(tmp_path, monkeypatch):
    import pandas as pd

    from llmscape import plots

    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, png, pdf=None: figures.append(fig))
    table = pd.DataFrame(
        {
            "matrix": ["q", "q", "k", "k"],
            "layer": [0, 1, 0, 1],
            "sigma_max": [1, 2, 3, 4],
            "condition_number": [5, 6, 7, 8],
        }
    )
    plots.plot_weight_spectra(table, "w.png", "w.pdf")
    fig = figures[0]
    fig.canvas.draw()
    ax = fig.axes[1]
    legend = ax.get_legend().get_window_extent()
    assert legend.x0 >= ax.get_window_extent().x1  # right of the plotting area, over no line
