"""The claims table's rules and measures on constructed cases (llmscape.claims): each rule says holds,
does not hold and inconclusive where it should, each measure gives its known value on a known surface."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llmscape import claims
from llmscape.claims import FAILS, HOLDS, INCONCLUSIVE, Verdict

A = np.linspace(-1, 1, 21)


def grid(f):
    a, b = np.meshgrid(A, A, indexing="ij")
    return f(a, b)


def test_larger_and_rank_have_a_band_where_they_cannot_tell():
    assert claims.larger(2.0, 1.0).verdict == HOLDS
    assert claims.larger(1.0, 2.0).verdict == FAILS
    assert claims.larger(1.05, 1.0).verdict == INCONCLUSIVE
    assert claims.larger(float("nan"), 1.0).verdict == INCONCLUSIVE
    values = {"first": 3.0, "middle": 1.0, "last": 2.0}
    assert claims.rank(values, "first").verdict == HOLDS
    assert claims.rank(values, "last").verdict == FAILS
    assert claims.rank({"first": 2.05, "last": 2.0}, "first").verdict == INCONCLUSIVE
    assert claims.rank(values, "middle", largest=False).verdict == HOLDS
    assert claims.rank(values, "first", largest=False).verdict == FAILS
    assert claims.rank({"first": 1.0}, "first").verdict == INCONCLUSIVE  # nothing to compare with
    assert claims.rank({"a": -1.0, "b": -3.0}, "a").verdict == HOLDS  # signs: relative to the larger magnitude


def test_agree_every_and_interval():
    h, f, i = Verdict(HOLDS, "h"), Verdict(FAILS, "f"), Verdict(INCONCLUSIVE, "i")
    assert claims.agree([h, h]).verdict == HOLDS
    assert claims.agree([f, f]).verdict == FAILS
    assert claims.agree([h, f]).verdict == INCONCLUSIVE and "disagree" in claims.agree([h, f]).why
    assert claims.agree([h, i]).verdict == INCONCLUSIVE
    assert claims.every([h, h]).verdict == HOLDS
    assert claims.every([h, f, i]).verdict == FAILS
    assert claims.every([h, i]).verdict == INCONCLUSIVE
    assert claims.every([]).verdict == INCONCLUSIVE
    assert claims.interval(2.5, 4.0, 2.0).verdict == HOLDS
    assert claims.interval(0.5, 1.5, 2.0).verdict == FAILS
    assert claims.interval(1.5, 2.5, 2.0).verdict == INCONCLUSIVE  # the CI straddles the threshold


@pytest.mark.parametrize(
    "rise1, rise2, verdict",
    [
        (0.1, 0.2, HOLDS),  # k = 1: a straight slope
        (0.1, 0.4, HOLDS),  # k = 2: a bowl
        (0.1, 0.1 * 2**2.6, INCONCLUSIVE),
        (0.01, 1.0, FAILS),  # k = 6.6: a flat floor and a wall
        (0.001, 0.002, FAILS),  # flat
    ],
)
def test_gradual_slope(rise1, rise2, verdict):
    k, v = claims.gradual_slope(rise1, rise2, 0.25, 0.5)
    assert v.verdict == verdict, v.why
    if verdict == HOLDS:
        assert k == pytest.approx(np.log(rise2 / rise1) / np.log(2))


def test_kept_inside_uses_the_bisection_brackets():
    assert claims.kept_inside(2.0, False, 1.0, 0.25).verdict == HOLDS
    assert claims.kept_inside(0.5, False, 1.0, 0.25).verdict == FAILS
    assert claims.kept_inside(1.1, False, 1.0, 0.25).verdict == INCONCLUSIVE  # brackets overlap
    assert claims.kept_inside(0.9, False, 1.0, 0.25).verdict == INCONCLUSIVE
    assert claims.kept_inside(4.0, True, 4.0, 0.25).verdict == HOLDS  # never left the capability basin


def test_centre_curvature_is_the_curvature_per_unit_distance():
    # f = λ1 a²/2 + λ2 b²/2 for unit directions: κ is the mean eigenvalue; for directions of norm 3, /9
    loss = grid(lambda a, b: 5.0 * a**2 / 2 + 1.0 * b**2 / 2 + 2.0)
    assert claims.centre_curvature(loss, [A, A], [1.0, 1.0]) == pytest.approx(3.0)
    assert claims.centre_curvature(loss, [A, A], [3.0, 3.0]) == pytest.approx(3.0 / 9)
    off = np.linspace(0.05, 1, 20)  # no grid point at the centre
    assert np.isnan(claims.centre_curvature(np.ones((20, 20)), [off, off], [1.0, 1.0]))


def test_nonconvexity_is_zero_for_a_bowl_and_one_for_a_saddle_or_cap():
    assert claims.nonconvexity(grid(lambda a, b: a**2 + 3 * b**2), [A, A]) == pytest.approx(0.0)
    assert claims.nonconvexity(grid(lambda a, b: a**2 - b**2), [A, A]) == pytest.approx(1.0)
    assert claims.nonconvexity(grid(lambda a, b: -(a**2) - b**2), [A, A]) == pytest.approx(1.0)
    assert claims.nonconvexity(grid(lambda a, b: 2 * a**2 - b**2), [A, A]) == pytest.approx(0.5)
    assert claims.nonconvexity(grid(lambda a, b: a + b), [A, A]) == pytest.approx(0.0)  # a plane curves nowhere
    # a rotated saddle: the mixed derivative counts
    assert claims.nonconvexity(grid(lambda a, b: a * b), [A, A]) == pytest.approx(1.0)


def _dynamics_tables(tmp_path, phrase, corpus, outside, losses, fixed_min):
    rows = [
        {"landscape": f"{d}-{s}", "data": d, "step": s, "plane": "fixed", "loss_centre": 3.0, "loss_min": fixed_min,
         "loss_max": 4.0, "roughness": v[0], "quadratic_residual": v[1], "local_minima": 1}
        for s in (0, 2)
        for d, v in (("phrase", phrase), ("corpus", corpus))
    ]  # fmt: skip
    pd.DataFrame(rows).to_csv(tmp_path / "roughness.csv", index=False)
    steps = pd.DataFrame(
        {
            "step": [0, 2],
            "loss_phrase": losses,
            "loss_corpus": [3.0, 3.0],
            "fixed_outside_fraction": [np.nan, outside],
        }
    )
    steps.to_csv(tmp_path / "steps.csv", index=False)
    inputs = {"dynamics.roughness": tmp_path / "roughness.csv", "dynamics.steps": tmp_path / "steps.csv"}
    config = {"dynamics": {"train": {"data": "phrase"}}}
    return {c.id: c for c in claims._dynamics_claims(config, inputs)}


def test_dynamics_claims_on_constructed_tables(tmp_path):
    got = _dynamics_tables(tmp_path, (0.2, 0.1), (0.05, 0.02), 0.9999, [3.0, 1.0], 2.5)
    assert got["corpus-smoother"].verdict == HOLDS and got["wormhole"].verdict == HOLDS
    got = _dynamics_tables(tmp_path, (0.05, 0.02), (0.2, 0.1), 0.5, [3.0, 1.0], 2.5)
    assert got["corpus-smoother"].verdict == FAILS and got["wormhole"].verdict == FAILS
    got = _dynamics_tables(tmp_path, (0.2, 0.02), (0.05, 0.1), 0.95, [3.0, 2.9], 2.5)  # measures disagree
    assert got["corpus-smoother"].verdict == INCONCLUSIVE and got["wormhole"].verdict == INCONCLUSIVE
    assert all(c.verdict == INCONCLUSIVE for c in claims._dynamics_claims({}, {}))  # no dynamics study


def test_basin_claims_on_constructed_tables(tmp_path):
    summary = pd.DataFrame(
        [
            {"layer": "all", "metric": "loss", "median": 1.0, "ci_low": 0.8, "ci_high": 1.2, "worst_radius": 0.1},
            {"layer": "last", "metric": "loss", "median": 1.0, "ci_low": 0.15, "ci_high": 1.2, "worst_radius": 0.1},
        ]
    )
    summary.to_csv(tmp_path / "summary.csv", index=False)
    radii = pd.DataFrame(
        [
            {"layer": "all", "direction": "ft", "metric": m, "radius": r, "censored": False, "precision": 0.25}
            for m, r in (("loss", 1.0), ("own/accuracy", 0.1), ("other/accuracy", 2.0))
        ]
    )
    radii.to_csv(tmp_path / "radii.csv", index=False)
    inputs = {"_basin.b.summary": tmp_path / "summary.csv", "_basin.b.radii": tmp_path / "radii.csv"}
    direction = {"ft": {"method": "checkpoint", "source": "finetune:ft"}}
    config = {
        "basins": {"b": {"directions": direction}},
        "finetune": {"ft": {"data": "probes:own", "answers": "wrong"}},
    }
    got = {c.id: c for c in claims._basin_claims(config, inputs)}
    assert got["basin-wide-narrow"].verdict == INCONCLUSIVE  # 'last': CI of the ratio [1.5, 12] straddles 2
    assert got["finetune-keeps"].verdict == HOLDS  # the adversarial fine-tune's own set is left out
    config["finetune"]["ft"]["answers"] = "right"  # benign: its own set counts, and it is lost
    got = {c.id: c for c in claims._basin_claims(config, inputs)}
    assert got["finetune-keeps"].verdict == FAILS
    assert all(c.verdict == INCONCLUSIVE for c in claims._basin_claims({"basins": {}}, {}))
