"""Basin radius along a direction: bracket, then bisect, recording every evaluated point.

Along a direction d the model is theta* + a d. For a metric m with centre value m(0), a point
is *inside* when

    loss-like (rise):        m(a) - m(0) <= tolerance
    capability-like (drop):  m(0) - m(a) <= tolerance

and m(a) is finite. On each side (a > 0 and a < 0) the basin radius is the largest |a| such
that every evaluated point with smaller |a| on that side is inside: the first exit, so a
metric that leaves the basin and comes back does not widen it. It is found adaptively:

1. bracket: with no wall seen yet, try ``start``, then go out by a factor ``GROWTH`` (4) until
   a point is outside or ``max_radius`` is reached (then the radius is ``max_radius``,
   *censored*: the basin reaches at least that far); a wall inside the first point is
   approached inwards by ``1 / SHRINK`` (1/8) per step. With a ``prior`` (the median radius
   the previous directions of the same job found; random directions of one target set are
   alike), the first point is the prior itself and the ladder grows by
   ``GROWTH_AFTER_PRIOR`` (1.5) from there;
2. bisect the bracket [last inside, first outside] until its width is at most
   ``precision`` times its upper end (a relative precision: radii of different target
   sets and directions differ by orders of magnitude, a worst-case wall can sit 1000 times
   closer than a random one): at the geometric mean while the bracket spans more than a
   factor 2, at the arithmetic mean after that.

Each round gathers the proposals of every metric and both sides, and evaluates them in one
batch per set of probe sets needed: a point is evaluated with the loss's data rows (always;
they are few) and the rows of the probe sets whose brackets asked for it, so that refining
the loss's wall does not pay for every capability's rows (a whole-model point costs in
proportion to its tokens). Metrics whose walls lie close share points. Bisection assumes one
crossing inside the bracket; the recorded points show where that was not so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from llmscape.errors import LlmscapeError

GROWTH = 4.0
SHRINK = 8.0
GROWTH_AFTER_PRIOR = 1.5
MAX_ROUNDS = 64
SIDES = (1, -1)


@dataclass(frozen=True)
class Criterion:
    """A metric and how far it may move from its centre value: ``rise`` (loss) or ``drop`` (accuracy).

    ``group``: the probe set whose rows the metric needs (None: the loss's data rows, always evaluated)."""

    metric: str
    kind: str  # "rise" | "drop"
    tolerance: float
    group: str | None = None

    def __post_init__(self):
        if self.kind not in ("rise", "drop"):
            raise LlmscapeError(f"criterion kind must be 'rise' or 'drop', got {self.kind!r}")
        if not self.tolerance > 0:
            raise LlmscapeError(f"tolerance of {self.metric} must be > 0, got {self.tolerance}")

    def inside(self, values: np.ndarray, centre: float) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        change = values - centre if self.kind == "rise" else centre - values
        with np.errstate(invalid="ignore"):
            return np.isfinite(values) & (change <= self.tolerance)


def criteria(tolerance: dict, capabilities: list[str]) -> list[Criterion]:
    """The loss (``tolerance['loss']`` nats) and each capability's accuracy (``tolerance['accuracy']``)."""
    out = [Criterion("loss", "rise", float(tolerance["loss"]))]
    out += [Criterion(f"{name}/accuracy", "drop", float(tolerance["accuracy"]), name) for name in capabilities]
    return out


@dataclass
class Bracket:
    """One side of one criterion: last inside ``lo`` and first outside ``hi`` (None: no wall yet)."""

    lo: float = 0.0
    hi: float | None = None
    done: bool = False
    censored: bool = False


@dataclass
class Search:
    """Every evaluated point of one direction (coefficient a, signed) and the radii found.

    ``values[m]`` is NaN where metric m was not evaluated (``evaluated[m]`` False): a point that
    only refines another metric's wall is evaluated without the other probe sets' rows."""

    a: np.ndarray  # [E]
    values: dict[str, np.ndarray]  # metric -> [E]
    evaluated: dict[str, np.ndarray]  # metric -> [E] bool
    centre: dict[str, float]
    radius: dict[str, dict[str, float]]  # criterion metric -> {"plus", "minus"}
    censored: dict[str, dict[str, bool]]
    rounds: int
    precision: float
    max_radius: float
    brackets: dict[str, dict[str, tuple[float, float | None]]] = field(default_factory=dict)

    @property
    def n_evals(self) -> int:
        return int(len(self.a))

    def radius_of(self, metric: str) -> float:
        """The direction's radius for a metric: the nearer wall, min(plus, minus)."""
        r = self.radius[metric]
        return float(min(r["plus"], r["minus"]))

    def curve(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """The metric at the centre and every point where it was evaluated, sorted by a."""
        known = self.evaluated[metric]
        a = np.concatenate([[0.0], self.a[known]])
        v = np.concatenate([[self.centre[metric]], self.values[metric][known]])
        order = np.argsort(a, kind="stable")
        return a[order], v[order]


def _update(bracket: Bracket, a: np.ndarray, ok: np.ndarray, max_radius: float, precision: float) -> None:
    """Recompute a side's bracket from all its evaluated points (|a|, inside flags)."""
    order = np.argsort(a, kind="stable")
    a, ok = a[order], ok[order]
    out = np.flatnonzero(~ok)
    if out.size:
        bracket.hi = float(a[out[0]])
        before = a[: out[0]]
        bracket.lo = float(before[-1]) if before.size else 0.0
    else:
        bracket.hi = None
        bracket.lo = float(a[-1]) if a.size else 0.0
    if bracket.hi is None:
        bracket.done = bracket.lo >= max_radius
        bracket.censored = bracket.done
    else:
        bracket.done = bracket.hi - bracket.lo <= precision * bracket.hi
        bracket.censored = False


Evaluate = Callable[[np.ndarray, frozenset], dict[str, np.ndarray]]


def search(
    evaluate: Evaluate,
    criteria_: list[Criterion],
    centre: dict[str, float],
    start: float,
    precision: float,
    max_radius: float,
    prior: dict[str, float] | None = None,
) -> Search:
    """Radii of every criterion on both sides along one direction (module docstring).

    ``evaluate(a [P], groups) -> {metric: [P]}`` evaluates the model at theta* + a d for a batch
    of signed coefficients, with the rows of the probe sets in ``groups`` (the loss's always);
    ``centre`` holds each metric at a = 0. A point is evaluated with the probe sets of the
    brackets that asked for it only."""
    if not 0 < start <= max_radius:
        raise LlmscapeError(f"search start must be in (0, max_radius = {max_radius}], got {start}")
    if not 0 < precision < 1:
        raise LlmscapeError(f"search precision must be in (0, 1) (relative to the radius), got {precision}")
    brackets = {(c.metric, s): Bracket() for c in criteria_ for s in SIDES}
    groups_of = {c.metric: c.group for c in criteria_}
    points: list[float] = []
    values: dict[str, list[float]] = {}
    known: dict[str, list[bool]] = {}
    rounds = 0
    first = True
    while not all(b.done for b in brackets.values()):
        rounds += 1
        if rounds > MAX_ROUNDS:
            raise LlmscapeError(f"basin search did not converge in {MAX_ROUNDS} rounds")
        proposals: dict[float, set] = {}
        for (metric, side), b in brackets.items():
            if b.done:
                continue
            wanted = []
            if b.hi is None:
                guess = (prior or {}).get(metric)
                guided = guess is not None and np.isfinite(guess) and guess > 0
                if first and guided:
                    wanted = [guess]
                elif b.lo > 0:
                    wanted = [b.lo * (GROWTH_AFTER_PRIOR if guided else GROWTH)]
                else:
                    wanted = [start]
            elif b.lo == 0:
                wanted = [b.hi / SHRINK]
            elif b.hi > 2 * b.lo:
                wanted = [float(np.sqrt(b.lo * b.hi))]
            else:
                wanted = [(b.lo + b.hi) / 2]
            for x in wanted:
                proposals.setdefault(side * float(min(x, max_radius)), set()).add(groups_of[metric])
        first = False
        by_groups: dict[frozenset, list[float]] = {}
        for x, groups in proposals.items():  # never a point already evaluated for the metric asking
            by_groups.setdefault(frozenset(g for g in groups if g is not None), []).append(x)
        if not by_groups:
            break
        for groups, xs in by_groups.items():
            xs = sorted(xs)
            got = evaluate(np.array(xs), groups)
            for metric in set(values) | set(got):
                col = got.get(metric)
                values.setdefault(metric, [np.nan] * len(points))
                known.setdefault(metric, [False] * len(points))
                values[metric] += list(np.asarray(col, dtype=np.float64)) if col is not None else [np.nan] * len(xs)
                known[metric] += [col is not None] * len(xs)
            points += xs
        a_all = np.array(points)
        for c in criteria_:
            mask = np.array(known[c.metric])
            ok = c.inside(np.array(values[c.metric]), centre[c.metric])
            for side in SIDES:
                on = mask & (np.sign(a_all) == side)
                _update(brackets[(c.metric, side)], np.abs(a_all[on]), ok[on], max_radius, precision)
    name = {1: "plus", -1: "minus"}
    return Search(
        a=np.array(points),
        values={k: np.array(v) for k, v in values.items()},
        evaluated={k: np.array(v, dtype=bool) for k, v in known.items()},
        centre=dict(centre),
        radius={c.metric: {name[s]: brackets[(c.metric, s)].lo for s in SIDES} for c in criteria_},
        censored={c.metric: {name[s]: brackets[(c.metric, s)].censored for s in SIDES} for c in criteria_},
        rounds=rounds,
        precision=precision,
        max_radius=max_radius,
        brackets={
            c.metric: {name[s]: (brackets[(c.metric, s)].lo, brackets[(c.metric, s)].hi) for s in SIDES}
            for c in criteria_
        },
    )


def dense_grid_points(radius: float, precision: float, max_radius: float) -> int:
    """Points a dense 1-D grid over [-max_radius, max_radius] needs to locate a wall at ``radius``
    as precisely as the search did (step = precision x radius)."""
    if not radius > 0:
        return 0
    return int(np.ceil(2 * max_radius / (precision * radius))) + 1


def bootstrap_median(values: np.ndarray, samples: int, level: float, seed: int) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the median (numpy PCG64, seeded)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    medians = np.median(values[rng.integers(0, values.size, size=(samples, values.size))], axis=1)
    tail = (1 - level) / 2
    return float(np.quantile(medians, tail)), float(np.quantile(medians, 1 - tail))
