"""The claims table: each claim of the studies this workflow reproduces, the measure that tests it, the
value(s) this run measured, and a verdict decided by a stated rule (never by hand).

A verdict is one of ``holds``, ``does not hold`` and ``inconclusive``. "Inconclusive" is a real outcome:
a difference inside the rule's margin, two measures of one claim that disagree, an uncertainty interval
that straddles the threshold, or a study (or a part of one) that is not in this config.

Rules (the thresholds are the module constants below):

- **largest / smallest of several** (``rank``): with v the value of the named entry and w the largest
  (smallest) of the others, the relative difference ``d = (v - w) / max(|v|, |w|)``: holds if
  ``d > MARGIN`` (``d < -MARGIN`` for smallest), does not hold if ``d < -MARGIN`` (``> MARGIN``),
  inconclusive in between.
- **larger than** (``larger``): the same relative difference between two values.
- **two measures of one claim** (``agree``): holds if every measure holds, does not hold if every
  measure does not hold, inconclusive otherwise.
- **the same claim at several layers or steps** (``every``): does not hold if any does not hold, holds if
  all hold, inconclusive otherwise.
- **interval against a threshold** (``interval``): holds if the whole interval lies above the
  threshold, does not hold if it lies below, inconclusive if it straddles it.

Measures (L the loss, f(a, b) = L(θ* + a·d + b·e) a landscape on its grid, h its grid step):

- ``lambda_max``: the largest Hessian eigenvalue of the loss restricted to a layer entry's targets
  (``tables/curvature.csv``; a spectrum whose Lanczos run did not converge makes the measure
  inconclusive).
- ``rise_r<r>``: the mean of f on the circle of radius r minus f(0, 0) (``tables/<study>/summary.csv``).
- ``roughness``: mean |five-point discrete Laplacian| of f over the grid's interior / (max f - min f)
  (llmscape.dynamics.geometry.roughness; 0 for a plane); ``quadratic_residual``: RMS misfit of the best
  full quadratic in (a, b) / (max f - min f) (0 for any quadratic bowl).
- ``growth exponent`` k = ln(rise(r₂) / rise(r₁)) / ln(r₂ / r₁) for the smallest and largest radius of the
  summary table: 1 for a cone (a straight slope), 2 for a quadratic bowl, larger for a flat floor ending
  in a wall. A *gradual slope* rises at least ``SLOPE_MIN_RISE`` nats by r₂ with k <= ``GRADUAL_K``;
  k > ``WALL_K`` is a wall (does not hold); between, inconclusive.
- ``κ`` (curvature per unit distance): the central second difference of f at the centre along each axis,
  (f(h, 0) - 2 f(0, 0) + f(-h, 0)) / h², divided by the axis direction's squared norm ‖d‖² (so unit
  Hessian and filter-normalized random directions compare), averaged over the two axes. For a unit
  eigenvector it is about its eigenvalue.
- ``non-convexity`` N (Li et al. 2018's |λ_min / λ_max| map, on the slice): at every interior grid point
  the 2 × 2 Hessian of f by central differences, eigenvalues λ_lo <= λ_hi; the point scores
  max(0, -λ_lo) / max(|λ_lo|, |λ_hi|) (0 where the surface is locally convex, 1 where it only curves
  down; 0 where both |λ| are rounding noise, below 1e-9 (max f − min f) / h²); N is the mean over the
  interior. A slice is *less convex* when its N is larger by more than ``CONVEXITY_MARGIN``.
- basin ratio (Chen et al. 2025): the median basin radius of the loss over random directions with its
  bootstrap confidence interval [lo, hi], divided by the worst-case direction's radius
  (``tables/basins/<basin>/summary.csv``). *Wide along most directions, narrow along the worst* holds
  if lo / worst > ``WIDE_FACTOR`` (interval rule).
- capability kept inside the basin: along a fine-tune (checkpoint) direction, the loss's basin radius r_L
  and each capability's r_c, both located by bisection to a relative precision p, so the walls lie in
  [r, r (1 + p)] (a censored radius has no upper end). The capability is kept inside the loss basin if
  r_c >= r_L (1 + p) (or censored at or beyond r_L), lost if r_c (1 + p) < r_L, inconclusive if the
  brackets overlap. An adversarial fine-tune (``answers: wrong``) is meant to change its own probe set,
  so that set is left out of its test; every other capability counts.
- wormhole: at the run's last saved step T, the fraction of θ_T − θ₀ outside the fixed plane
  (``tables/dynamics/steps.csv``) and L(θ_T) against the lowest point of the fixed slice f₀ on the training
  data (``tables/dynamics/roughness.csv``). Holds if the outside fraction >= ``OUTSIDE_HOLDS`` and
  L(θ_T) < min f₀ (the run reached a loss no point of the slice shows); does not hold if the fraction
  < ``OUTSIDE_FAILS`` or the loss did not fall; inconclusive otherwise.
- corpus versus phrase: roughness and quadratic residual of the fixed-plane slices on the corpus and on
  the phrase at every step where both were evaluated; smoother = smaller (``larger`` rule, reversed),
  both measures (``agree``) at every step (``every``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from llmscape.dynamics.geometry import quadratic_residual, roughness
from llmscape.models import read_manifest
from llmscape.store import Landscape

HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE)

MARGIN = 0.1  # relative difference below which two values count as equal
CONVEXITY_MARGIN = 0.05  # absolute, non-convexity is in [0, 1]
GRADUAL_K, WALL_K, SLOPE_MIN_RISE = 2.2, 3.0, 0.01
WIDE_FACTOR = 2.0
OUTSIDE_HOLDS, OUTSIDE_FAILS = 0.99, 0.9

COLUMNS = ("id", "claim", "source", "measure", "values", "verdict", "why", "rule")

LI = "Li et al. 2018 (adapted to LLMs: the seed study)"
CHEN = "Chen et al. 2025 (basins)"
WORMHOLE = "the training-dynamics study (the 'wormhole' effect)"


@dataclass
class Verdict:
    verdict: str
    why: str


@dataclass
class Claim:
    id: str
    claim: str
    source: str
    measure: str
    values: str
    verdict: str
    why: str
    rule: str


# ------------------------------------------------------------------------------------------- rules


def relative_difference(v: float, w: float) -> float:
    scale = max(abs(v), abs(w))
    return 0.0 if scale == 0 else (v - w) / scale


def larger(v: float, w: float, margin: float = MARGIN, what: str = "value") -> Verdict:
    """Whether v is larger than w by more than ``margin`` (relative difference)."""
    if not (np.isfinite(v) and np.isfinite(w)):
        return Verdict(INCONCLUSIVE, f"{what} not finite")
    d = relative_difference(v, w)
    if d > margin:
        return Verdict(HOLDS, f"{what} larger by {100 * d:.0f}%")
    if d < -margin:
        return Verdict(FAILS, f"{what} smaller by {100 * -d:.0f}%")
    return Verdict(INCONCLUSIVE, f"{what} within {100 * margin:.0f}% ({100 * d:+.0f}%)")


def rank(values: dict[str, float], key: str, largest: bool = True, margin: float = MARGIN, what: str = "") -> Verdict:
    """Whether ``values[key]`` is the largest (smallest) of ``values`` by more than ``margin``."""
    if key not in values or len(values) < 2:
        return Verdict(INCONCLUSIVE, f"{what}: fewer than two entries to compare")
    v = values[key]
    others = {k: w for k, w in values.items() if k != key}
    if not all(np.isfinite(x) for x in values.values()):
        return Verdict(INCONCLUSIVE, f"{what}: a value is not finite")
    rival = max(others, key=others.get) if largest else min(others, key=others.get)
    d = relative_difference(v, others[rival])
    d = d if largest else -d
    word = "largest" if largest else "smallest"
    if d > margin:
        return Verdict(HOLDS, f"{what}: {key} {word}, {100 * d:.0f}% beyond {rival}")
    if d < -margin:
        return Verdict(FAILS, f"{what}: {rival}, not {key}, is {word} ({100 * -d:.0f}% beyond)")
    return Verdict(INCONCLUSIVE, f"{what}: {key} and {rival} within {100 * margin:.0f}%")


def agree(verdicts: list[Verdict]) -> Verdict:
    """Two or more measures of one claim: holds if all hold, does not hold if none holds and all fail."""
    why = "; ".join(v.why for v in verdicts)
    kinds = {v.verdict for v in verdicts}
    if kinds == {HOLDS}:
        return Verdict(HOLDS, why)
    if kinds == {FAILS}:
        return Verdict(FAILS, why)
    if HOLDS in kinds and FAILS in kinds:
        return Verdict(INCONCLUSIVE, "the measures disagree: " + why)
    return Verdict(INCONCLUSIVE, why)


def every(verdicts: list[Verdict]) -> Verdict:
    """One claim at several layers, steps or directions: one failure fails it, all must hold to hold it."""
    if not verdicts:
        return Verdict(INCONCLUSIVE, "nothing to test")
    why = "; ".join(v.why for v in verdicts)
    kinds = [v.verdict for v in verdicts]
    if FAILS in kinds:
        return Verdict(FAILS, why)
    if all(k == HOLDS for k in kinds):
        return Verdict(HOLDS, why)
    return Verdict(INCONCLUSIVE, why)


def interval(low: float, high: float, threshold: float, what: str = "value") -> Verdict:
    """Whether an uncertainty interval [low, high] lies above ``threshold``."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return Verdict(INCONCLUSIVE, f"{what}: interval not finite")
    if low > threshold:
        return Verdict(HOLDS, f"{what} [{low:.3g}, {high:.3g}] above {threshold:g}")
    if high < threshold:
        return Verdict(FAILS, f"{what} [{low:.3g}, {high:.3g}] below {threshold:g}")
    return Verdict(INCONCLUSIVE, f"{what} [{low:.3g}, {high:.3g}] straddles {threshold:g}")


def gradual_slope(rise_small: float, rise_large: float, r_small: float, r_large: float) -> tuple[float, Verdict]:
    """The growth exponent k of the rise between two radii, and the gradual-slope verdict."""
    if not (np.isfinite(rise_small) and np.isfinite(rise_large)) or r_large <= r_small:
        return float("nan"), Verdict(INCONCLUSIVE, "needs the rise at two radii")
    if rise_large < SLOPE_MIN_RISE:
        return float("nan"), Verdict(FAILS, f"flat: rise {rise_large:.3g} < {SLOPE_MIN_RISE} nats at r = {r_large:g}")
    if rise_small <= 0:
        return float("nan"), Verdict(INCONCLUSIVE, f"rise at r = {r_small:g} is not positive")
    k = math.log(rise_large / rise_small) / math.log(r_large / r_small)
    if k <= GRADUAL_K:
        return k, Verdict(HOLDS, f"k = {k:.2f} <= {GRADUAL_K}")
    if k > WALL_K:
        return k, Verdict(FAILS, f"k = {k:.2f} > {WALL_K}: a wall")
    return k, Verdict(INCONCLUSIVE, f"k = {k:.2f} between {GRADUAL_K} and {WALL_K}")


def kept_inside(r_cap: float, cap_censored: bool, r_loss: float, precision: float) -> Verdict:
    """Whether a capability's basin wall lies beyond the loss's along one direction (bisection brackets)."""
    if not (np.isfinite(r_cap) and np.isfinite(r_loss)):
        return Verdict(INCONCLUSIVE, "radius not finite")
    if cap_censored and r_cap >= r_loss:
        return Verdict(HOLDS, f"capability never left (censored at {r_cap:.3g}) within the loss radius {r_loss:.3g}")
    if r_cap >= r_loss * (1 + precision):
        return Verdict(HOLDS, f"capability radius {r_cap:.3g} >= loss radius {r_loss:.3g} x (1 + {precision:g})")
    if r_cap * (1 + precision) < r_loss:
        return Verdict(FAILS, f"capability radius {r_cap:.3g} x (1 + {precision:g}) < loss radius {r_loss:.3g}")
    return Verdict(INCONCLUSIVE, f"capability radius {r_cap:.3g} and loss radius {r_loss:.3g} within the brackets")


# ---------------------------------------------------------------------------------------- measures


def _centre_index(axis: np.ndarray) -> int | None:
    i = int(np.argmin(np.abs(axis)))
    step = float(np.min(np.diff(axis))) if len(axis) > 1 else 1.0
    return i if abs(axis[i]) < 1e-9 * max(step, 1.0) and 0 < i < len(axis) - 1 else None


def centre_curvature(loss: np.ndarray, axes: list[np.ndarray], norms: list[float]) -> float:
    """κ: the central second difference at the centre along each axis / (h² ‖d‖²), mean over the axes.
    NaN when the centre is not an interior grid point or a value is not finite."""
    z = np.asarray(loss, dtype=float)
    centre = [_centre_index(a) for a in axes]
    if any(c is None for c in centre):
        return float("nan")
    out = []
    for k, (a, norm) in enumerate(zip(axes, norms, strict=True)):
        idx = list(centre)
        i = idx[k]
        lo, hi = list(idx), list(idx)
        lo[k], hi[k] = i - 1, i + 1
        h_lo, h_hi = a[i] - a[i - 1], a[i + 1] - a[i]
        f0, fl, fh = z[tuple(idx)], z[tuple(lo)], z[tuple(hi)]
        second = 2 * ((fh - f0) / h_hi - (f0 - fl) / h_lo) / (h_lo + h_hi)
        out.append(second / norm**2)
    value = float(np.mean(out))
    return value if np.isfinite(value) else float("nan")


def surface_hessians(loss: np.ndarray, axes: list[np.ndarray]) -> np.ndarray:
    """The 2 × 2 Hessian of a 2-D surface at every interior grid point by central differences
    (coefficient units; uniform steps per axis): [A - 2, B - 2, 2, 2]."""
    z = np.asarray(loss, dtype=float)
    ha, hb = float(np.mean(np.diff(axes[0]))), float(np.mean(np.diff(axes[1])))
    faa = (z[2:, 1:-1] - 2 * z[1:-1, 1:-1] + z[:-2, 1:-1]) / ha**2
    fbb = (z[1:-1, 2:] - 2 * z[1:-1, 1:-1] + z[1:-1, :-2]) / hb**2
    fab = (z[2:, 2:] - z[2:, :-2] - z[:-2, 2:] + z[:-2, :-2]) / (4 * ha * hb)
    return np.stack([np.stack([faa, fab], -1), np.stack([fab, fbb], -1)], -2)


def nonconvexity(loss: np.ndarray, axes: list[np.ndarray]) -> float:
    """N: the mean over interior points of max(0, -λ_lo) / max(|λ_lo|, |λ_hi|) of the surface's 2 × 2 Hessian.
    NaN for a grid smaller than 3 × 3 or with a non-finite value."""
    z = np.asarray(loss, dtype=float)
    if z.ndim != 2 or min(z.shape) < 3 or not np.isfinite(z).all():
        return float("nan")
    eig = np.linalg.eigvalsh(surface_hessians(z, axes))  # ascending: [..., 0] = λ_lo
    lo, hi = eig[..., 0], eig[..., 1]
    scale = np.maximum(np.abs(lo), np.abs(hi))
    h = min(float(np.mean(np.diff(a))) for a in axes)
    flat = scale <= 1e-9 * max(float(z.max() - z.min()), 1e-300) / h**2  # rounding noise, not curvature
    score = np.where(flat, 0.0, np.maximum(0.0, -lo) / np.where(flat, 1.0, scale))
    return float(score.mean())


def direction_norms(path: str | Path) -> list[float]:
    """‖d‖ of each axis of a directions file (over all its target tensors)."""
    with h5py.File(path) as f:
        out = []
        for axis in sorted(k for k in f if k.startswith("axis")):
            total = 0.0
            for name in f[axis]:
                x = f[axis][name][...].astype(np.float64)
                total += float(np.sum(x * x))
            out.append(math.sqrt(total))
    return out


# --------------------------------------------------------------------------------------- the table


def _fmt(x: float) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:.3g}"


def _claim(spec: tuple[str, str, str, str], source: str, values: list[str], v: Verdict) -> Claim:
    """A claim from its (id, claim, measure, rule), the measured values and the verdict."""
    id, claim, measure, rule = spec
    return Claim(id, claim, source, measure, "; ".join(values) or "–", v.verdict, v.why, rule)


def _missing(id: str, claim: str, source: str, measure: str, rule: str, why: str) -> Claim:
    return Claim(id, claim, source, measure, "–", INCONCLUSIVE, why, rule)


@dataclass
class _Layer:
    """One layer entry's random slice (and its other directions) in a landscape study."""

    position: str
    index: int
    row: dict  # summary.csv row of its random direction
    landscapes: dict  # direction -> (Landscape, method, directions path)


def _study_layers(name: str, study: dict, inputs: dict) -> list[_Layer]:
    table = pd.read_csv(inputs[f"{name}.table"])
    files = list(zip(inputs[f"{name}.landscapes"], inputs[f"{name}.directions"], strict=True))
    by_layer: dict[int, _Layer] = {}
    for h5, dirs in files:
        ls = Landscape.load(h5)
        recipe = ls.attrs["provenance"]["directions_recipe"]
        index = recipe["layer_index"]
        if index is None:
            continue
        direction = _direction_of(h5)
        method = study["directions"][direction]["method"]
        entry = by_layer.get(index)
        if entry is None:
            rows = table[(table["layer_index"] == index)]
            entry = by_layer[index] = _Layer(str(rows["layer"].iloc[0]), int(index), {}, {})
        entry.landscapes[direction] = (ls, method, dirs)
        if method == "random" and not entry.row:
            entry.row = table[(table["layer_index"] == index) & (table["direction"] == direction)].iloc[0].to_dict()
    return [by_layer[i] for i in sorted(by_layer)]


def _direction_of(path: str | Path) -> str:
    """The direction's key from a landscape's file name ``<layer>-<direction>.h5``."""
    return Path(path).stem.split("-", 1)[1]


def _pick_study(config: dict, need_hessian: bool) -> str | None:
    """The first 2-D study with a random direction at two or more layer entries (and a Hessian one)."""
    for name, s in config["studies"].items():
        methods = {d["method"] for d in s["directions"].values()}
        if s["grid"]["dims"] != 2 or "random" not in methods or len(s["layers"]) < 2:
            continue
        if need_hessian and "hessian" not in methods:
            continue
        return name
    return None


def _layer_claims(config: dict, inputs: dict) -> list[Claim]:
    rule_rank = f"rank rule, margin {MARGIN:.0%}; two measures must agree"
    rule_gradual = (
        f"gradual if the rise at the largest radius >= {SLOPE_MIN_RISE} nats and k <= {GRADUAL_K}; "
        f"a wall (does not hold) if k > {WALL_K} or flat; inconclusive between"
    )
    claims = {
        "first-sharpest": (
            "The first layer shows the sharpest local structure.",
            "λ_max of the layer's Hessian; rise at the smallest radius of the random slice",
        ),
        "middle-smoothest": (
            "The middle layer shows the smoothest landscape.",
            "roughness and quadratic residual of the random slice",
        ),
        "last-gradual": (
            "The last layer shows a gradual slope.",
            "growth exponent k of the random slice's rise between the smallest and largest radius",
        ),
    }
    name = _pick_study(config, need_hessian=False)
    if name is None:
        why = "no 2-D study with a random direction at two or more layers in this config"
        rules = {"last-gradual": rule_gradual}
        return [_missing(i, c, LI, m, rules.get(i, rule_rank), why) for i, (c, m) in claims.items()]
    layers = [entry for entry in _study_layers(name, config["studies"][name], inputs) if entry.row]
    n_layers = read_manifest(inputs["model"])["n_layers"]
    radii = sorted(float(c.removeprefix("rise_r")) for c in layers[0].row if c.startswith("rise_r"))
    radii = [r for r in radii if all(np.isfinite(e.row[f"rise_r{r:g}"]) for e in layers)]
    first = next((e for e in layers if e.index == 0), None)
    last = next((e for e in layers if e.index == n_layers - 1), None)
    mids = [e for e in layers if 0 < e.index < n_layers - 1]
    middle = min(mids, key=lambda e: abs(e.index - (n_layers - 1) / 2)) if mids else None
    out = []

    # first sharpest
    c, m = claims["first-sharpest"]
    curv = pd.read_csv(inputs["curvature_table"]) if "curvature_table" in inputs else None
    if first is None:
        out.append(_missing("first-sharpest", c, LI, m, rule_rank, f"study {name} has no first layer"))
    else:
        verdicts, values = [], []
        if curv is not None and (curv["study"] == name).any():
            rows = curv[curv["study"] == name]
            lam = {str(r.layer): float(r.lambda_max) for r in rows.itertuples()}
            v = rank(lam, first.position, True, what="λ_max")
            if not rows["all_converged"].astype(bool).all():
                v = Verdict(INCONCLUSIVE, "λ_max: a Lanczos run did not converge")
            verdicts.append(v)
            values.append("λ_max " + ", ".join(f"{k} {_fmt(x)}" for k, x in lam.items()))
        else:
            verdicts.append(Verdict(INCONCLUSIVE, f"λ_max: study {name} has no curvature"))
        if radii:
            r = radii[0]
            rise = {e.position: float(e.row[f"rise_r{r:g}"]) for e in layers}
            verdicts.append(rank(rise, first.position, True, what=f"rise at r = {r:g}"))
            values.append(f"rise r={r:g}: " + ", ".join(f"{k} {_fmt(x)}" for k, x in rise.items()))
        else:
            verdicts.append(Verdict(INCONCLUSIVE, "rise: no radius inside every grid"))
        v = agree(verdicts)
        out.append(Claim("first-sharpest", c, LI, m, "; ".join(values), v.verdict, v.why, rule_rank))

    # middle smoothest
    c, m = claims["middle-smoothest"]
    if middle is None:
        out.append(_missing("middle-smoothest", c, LI, m, rule_rank, f"study {name} has no middle layer"))
    else:
        rough, resid = {}, {}
        for e in layers:
            ls = e.landscapes[e.row["direction"]][0]
            rough[e.position], resid[e.position] = roughness(ls.loss), quadratic_residual(ls.loss)
        v = agree(
            [
                rank(rough, middle.position, False, what="roughness"),
                rank(resid, middle.position, False, what="quadratic residual"),
            ]
        )
        values = "roughness " + ", ".join(f"{k} {_fmt(x)}" for k, x in rough.items())
        values += "; quadratic residual " + ", ".join(f"{k} {_fmt(x)}" for k, x in resid.items())
        out.append(Claim("middle-smoothest", c, LI, m, values, v.verdict, v.why, rule_rank))

    # last gradual
    c, m = claims["last-gradual"]
    rule = rule_gradual
    if last is None or len(radii) < 2:
        why = f"study {name} has no last layer" if last is None else "needs the rise at two radii inside the grid"
        out.append(_missing("last-gradual", c, LI, m, rule, why))
    else:
        r1, r2 = radii[0], radii[-1]
        k, v = gradual_slope(last.row[f"rise_r{r1:g}"], last.row[f"rise_r{r2:g}"], r1, r2)
        others = []
        for e in layers:
            ke, _ = gradual_slope(e.row[f"rise_r{r1:g}"], e.row[f"rise_r{r2:g}"], r1, r2)
            others.append(f"{e.position} {_fmt(ke)}")
        values = (
            f"k ({r1:g} → {r2:g}): "
            + ", ".join(others)
            + f"; rise at r={r2:g} (last) {_fmt(last.row[f'rise_r{r2:g}'])}"
        )
        out.append(Claim("last-gradual", c, LI, m, values, v.verdict, v.why, rule))
    return out


def _hessian_claims(config: dict, inputs: dict) -> list[Claim]:
    sharper = (
        "hessian-sharper",
        "Hessian directions give sharper slices than random ones.",
        "κ, the slice's curvature at the centre per unit squared distance (Method)",
        f"larger rule (margin {MARGIN:.0%}) at every layer entry",
    )
    convex = (
        "hessian-less-convex",
        "Hessian directions give less convex slices than random ones.",
        "non-convexity N of the slice (Li et al.'s |λ_min/λ_max|, Method)",
        f"N(Hessian) − N(random) > {CONVEXITY_MARGIN} at every layer entry; < −{CONVEXITY_MARGIN} at one fails it",
    )
    name = _pick_study(config, need_hessian=True)
    if name is None:
        why = "no 2-D study with both random and Hessian directions in this config"
        return [_missing(i, c, LI, m, r, why) for i, c, m, r in (sharper, convex)]
    layers = _study_layers(name, config["studies"][name], inputs)
    k_verdicts, n_verdicts, k_values, n_values = [], [], [], []
    for e in layers:
        by_method = {}
        for ls, method, dirs in e.landscapes.values():
            by_method.setdefault(method, (ls, dirs))
        if not {"random", "hessian"} <= set(by_method):
            continue
        kappa, ncvx = {}, {}
        for method in ("hessian", "random"):
            ls, dirs = by_method[method]
            kappa[method] = centre_curvature(ls.loss, ls.axes, direction_norms(dirs))
            ncvx[method] = nonconvexity(ls.loss, ls.axes)
        k_verdicts.append(larger(kappa["hessian"], kappa["random"], what=f"{e.position}: κ"))
        k_values.append(f"{e.position} {_fmt(kappa['hessian'])} vs {_fmt(kappa['random'])}")
        d = ncvx["hessian"] - ncvx["random"]
        if not np.isfinite(d):
            n_verdicts.append(Verdict(INCONCLUSIVE, f"{e.position}: N not finite"))
        elif d > CONVEXITY_MARGIN:
            n_verdicts.append(Verdict(HOLDS, f"{e.position}: N larger by {d:.2f}"))
        elif d < -CONVEXITY_MARGIN:
            n_verdicts.append(Verdict(FAILS, f"{e.position}: N smaller by {-d:.2f}"))
        else:
            n_verdicts.append(Verdict(INCONCLUSIVE, f"{e.position}: N within {CONVEXITY_MARGIN} ({d:+.2f})"))
        n_values.append(f"{e.position} {_fmt(ncvx['hessian'])} vs {_fmt(ncvx['random'])}")
    out = []
    for (i, c, m, r), verdicts, values in ((sharper, k_verdicts, k_values), (convex, n_verdicts, n_values)):
        v = every(verdicts)
        shown = "Hessian vs random: " + ", ".join(values) if values else "–"
        out.append(Claim(i, c, LI, m, shown, v.verdict, v.why, r))
    return out


def _basin_claims(config: dict, inputs: dict) -> list[Claim]:
    wide = (
        "basin-wide-narrow",
        "The model sits in a wide basin along most directions and a narrow one along the worst.",
        "median loss-basin radius over random directions (bootstrap CI) / worst-case radius",
        f"interval rule: the CI of the ratio above {WIDE_FACTOR:g} at every layer entry",
    )
    keep = (
        "finetune-keeps",
        "Fine-tuning inside the basin keeps capabilities.",
        "along each fine-tune direction: each capability's basin radius against the loss's (bisection brackets)",
        "kept if r_c >= r_L (1 + p), lost if r_c (1 + p) < r_L, inconclusive if the brackets overlap; "
        "every capability at every layer entry (an adversarial fine-tune's own probe set left out)",
    )
    basins = config.get("basins") or {}
    if not basins:
        why = "no basin study in this config"
        return [_missing(i, c, CHEN, m, r, why) for i, c, m, r in (wide, keep)]
    w_verdicts, w_values, k_verdicts, k_values = [], [], [], []
    for basin, section in basins.items():
        summary = pd.read_csv(inputs[f"_basin.{basin}.summary"])
        radii = pd.read_csv(inputs[f"_basin.{basin}.radii"])
        for row in summary[summary["metric"] == "loss"].to_dict("records"):
            worst = row.get("worst_radius", float("nan"))
            if not np.isfinite(worst) or worst <= 0:
                w_verdicts.append(Verdict(INCONCLUSIVE, f"{basin}/{row['layer']}: no worst-case direction"))
                continue
            lo, hi = row["ci_low"] / worst, row["ci_high"] / worst
            w_verdicts.append(interval(lo, hi, WIDE_FACTOR, what=f"{basin}/{row['layer']}: ratio CI"))
            w_values.append(f"{row['layer']}: {_fmt(row['median'] / worst)} [{_fmt(lo)}, {_fmt(hi)}]")
        for direction, spec in section["directions"].items():
            source = str(spec.get("source", ""))
            if spec["method"] != "checkpoint" or not source.startswith("finetune:"):
                continue
            ft = (config.get("finetune") or {})[source.removeprefix("finetune:")]
            own = str(ft["data"]).removeprefix("probes:") if ft.get("answers") == "wrong" else None
            kind = "adversarial" if own else "benign"
            rows = radii[radii["direction"] == direction]
            for layer, group in rows.groupby("layer", sort=False):
                loss = group[group["metric"] == "loss"].iloc[0]
                for cap in group[group["metric"] != "loss"].to_dict("records"):
                    if not cap["metric"].endswith("/accuracy") or cap["metric"].split("/")[0] == own:
                        continue
                    v = kept_inside(cap["radius"], bool(cap["censored"]), loss["radius"], float(loss["precision"]))
                    v.why = f"{direction} ({kind}) {layer} {cap['metric']}: {v.why}"
                    k_verdicts.append(v)
                    radii_shown = f"{_fmt(cap['radius'])} vs loss {_fmt(loss['radius'])}"
                    k_values.append(f"{direction} ({kind}) {layer}: {cap['metric']} {radii_shown}")
    out = []
    v = every(w_verdicts)
    out.append(_claim(wide, CHEN, w_values, v))
    why = "no fine-tune direction (with a capability to test) in this config"
    out.append(_claim(keep, CHEN, k_values, every(k_verdicts) if k_verdicts else Verdict(INCONCLUSIVE, why)))
    return out


def _dynamics_claims(config: dict, inputs: dict) -> list[Claim]:
    smoother = (
        "corpus-smoother",
        "The corpus-averaged landscape is smoother than a single phrase's.",
        "roughness and quadratic residual of the fixed-plane slices, corpus against phrase",
        f"smaller by more than {MARGIN:.0%} (relative), both measures agreeing, at every step evaluated on both",
    )
    worm = (
        "wormhole",
        "A training step leaves the fixed 2-D slice (the 'wormhole').",
        "fraction of θ_T − θ₀ outside the fixed plane; L(θ_T) against the fixed slice's lowest point",
        f"holds if the fraction >= {OUTSIDE_HOLDS} and L(θ_T) < min f₀; does not hold if the fraction < "
        f"{OUTSIDE_FAILS} or the loss did not fall; inconclusive otherwise",
    )
    if "dynamics.roughness" not in inputs:
        why = "no dynamics study in this config"
        return [_missing(i, c, WORMHOLE, m, r, why) for i, c, m, r in (smoother, worm)]
    rough = pd.read_csv(inputs["dynamics.roughness"])
    steps = pd.read_csv(inputs["dynamics.steps"])
    fixed = rough[rough["plane"] == "fixed"]
    both = sorted(set(fixed[fixed.data == "phrase"].step) & set(fixed[fixed.data == "corpus"].step))
    verdicts, values = [], []
    for s in both:
        at = {n: fixed[(fixed.data == n) & (fixed.step == s)].iloc[0] for n in ("phrase", "corpus")}
        per = []
        for col in ("roughness", "quadratic_residual"):
            per.append(larger(at["phrase"][col], at["corpus"][col], what=f"step {s}: phrase {col.replace('_', ' ')}"))
            values.append(
                f"step {s} {col.replace('_', ' ')}: corpus {_fmt(at['corpus'][col])}, phrase {_fmt(at['phrase'][col])}"
            )
        verdicts.append(agree(per))
    v = every(verdicts)
    out = [_claim(smoother, WORMHOLE, values, v)]

    train = config["dynamics"]["train"]["data"]
    first, last = steps.iloc[0], steps.iloc[-1]
    slice0 = fixed[(fixed.data == train) & (fixed.step == int(first.step))]
    outside = float(last["fixed_outside_fraction"])
    l0, lT = float(first[f"loss_{train}"]), float(last[f"loss_{train}"])
    fmin = float(slice0["loss_min"].iloc[0]) if len(slice0) else float("nan")
    values = (
        f"step {int(last.step)}: outside fraction {outside:.6f}; L(θ_T) {lT:.4f} vs L(θ₀) {l0:.4f}, "
        f"min f₀ {_fmt(fmin)} ({train})"
    )
    if not (np.isfinite(outside) and np.isfinite(lT) and np.isfinite(fmin)):
        v = Verdict(INCONCLUSIVE, "a value is missing (a run stopped before its first saved step?)")
    elif outside < OUTSIDE_FAILS or lT >= l0:
        v = Verdict(FAILS, f"outside fraction {outside:.4f}" + ("" if lT < l0 else "; the loss did not fall"))
    elif outside >= OUTSIDE_HOLDS and lT < fmin:
        v = Verdict(HOLDS, f"outside fraction {outside:.4f} >= {OUTSIDE_HOLDS}; L(θ_T) below every point of f₀")
    else:
        v = Verdict(INCONCLUSIVE, f"outside fraction {outside:.4f}; L(θ_T) {lT:.4f} vs min f₀ {fmin:.4f}")
    out.append(_claim(worm, WORMHOLE, [values], v))
    return out


def evaluate(inputs: dict, config: dict) -> pd.DataFrame:
    """The claims table from the claims rule's named inputs (workflow/rules/claims_common.smk): per study
    ``<study>.table``, ``.landscapes``, ``.directions``; ``curvature_table``; ``_basin.<basin>.summary`` and
    ``.radii``; ``dynamics.steps`` and ``dynamics.roughness``; ``model`` (the prepared model's directory)."""
    claims = (
        _layer_claims(config, inputs)
        + _hessian_claims(config, inputs)
        + _basin_claims(config, inputs)
        + _dynamics_claims(config, inputs)
    )
    return pd.DataFrame([asdict(c) for c in claims], columns=list(COLUMNS))


def write(inputs: dict, config: dict, out: str | Path) -> pd.DataFrame:
    table = evaluate(inputs, config)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    return table
