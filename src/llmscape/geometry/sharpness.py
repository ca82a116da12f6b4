"""Sharp, flat or saddle: one row per spectrum (layer entry, or dynamics step), labelled by a stated rule.

Per spectrum file (llmscape.curvature.spectrum) of n parameters:

    lambda_max,   tr(H) / n (Hutchinson),   R = lambda_max / |lambda_min|,
    nu = 1/P sum_p sum_{l: theta_pl < 0} w_pl        (negative eigenvalue mass of the SLQ density:
                                                      the quadrature weight on negative Ritz
                                                      values, NaN when no density was computed).

The rule (``label``), applied to the rows of one group (a study's layer entries, or the
dynamics study's steps), with thresholds from the config (``geometry.sharpness``):

    saddle  if lambda_min < 0 and (|lambda_min| >= r lambda_max  or  nu > m)
            (negative curvature comparable to the top one, or a large share of the
             spectrum's mass below zero; r = saddle_ratio, m = negative_mass);
    sharp   otherwise, if lambda_max > the median lambda_max of the group;
    flat    otherwise.

"Sharp" and "flat" are relative to the group (a target set is sharp compared with the other
entries of its study), "saddle" is absolute. A missing nu (no density) only drops that clause.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def negative_mass(nodes: np.ndarray, weights: np.ndarray) -> float:
    """nu: the SLQ quadrature weight on negative Ritz values, averaged over probes."""
    w = np.where(np.isfinite(nodes) & (nodes < 0), weights, 0.0)
    return float(w.sum(axis=1).mean())


def label(lambda_max: float, lambda_min: float, nu: float, median_max: float, saddle_ratio: float, neg_mass: float):
    """The rule of the module docstring for one row."""
    if lambda_min < 0 and (abs(lambda_min) >= saddle_ratio * lambda_max or (np.isfinite(nu) and nu > neg_mass)):
        return "saddle"
    return "sharp" if lambda_max > median_max else "flat"


def sharpness_table(rows: list[dict], saddle_ratio: float, neg_mass: float) -> pd.DataFrame:
    """``rows``: dicts with group, entry, n_params, lambda_max, lambda_min, trace, and optionally nu;
    adds trace_per_param, ratio, negative_mass and label per the rule (median within each group)."""
    table = pd.DataFrame(rows)
    if "negative_mass" not in table:
        table["negative_mass"] = np.nan
    table["trace_per_param"] = table["trace"] / table["n_params"]
    table["ratio"] = table["lambda_max"] / table["lambda_min"].abs()
    medians = table.groupby("group")["lambda_max"].transform("median")
    table["label"] = [
        label(r.lambda_max, r.lambda_min, r.negative_mass, m, saddle_ratio, neg_mass)
        for r, m in zip(table.itertuples(), medians, strict=True)
    ]
    return table


def spectrum_row(group: str, entry: str, spectrum) -> dict:
    """A table row of a loaded Spectrum."""
    d = spectrum.density
    return {
        "group": group,
        "entry": entry,
        "n_params": spectrum.n_params,
        "lambda_max": spectrum.lambda_max,
        "lambda_min": spectrum.lambda_min,
        "trace": spectrum.trace.trace if spectrum.trace is not None else np.nan,
        "negative_mass": negative_mass(d.nodes, d.weights) if d is not None else np.nan,
    }
