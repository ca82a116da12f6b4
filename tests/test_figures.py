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
