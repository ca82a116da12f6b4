"""Evaluating the model along one direction: metrics at theta* + a d for batches of a, by a grid
engine over the loss data and the capability probes at once; and the curvature check.

**Curvature check.** For a direction d, the slice f(a) = L(theta* + a d) has second derivative
f''(0) = d^T H d at the centre, H the Hessian of the loss over the targets. The search's engine
gives the second differences

    D(h) = (f(h) + f(-h) - 2 f(0)) / h^2 = d^T H d + O(h^2),

and the Richardson combination (4 D(h/2) - D(h)) / 3 removes the h^2 term; an exact
Hessian-vector product (llmscape.curvature.TargetLoss.hvp, double backward) gives d^T H d
directly. The two are independent computations of one number: an engine and a direction
that disagree by more than ``rtol`` (plus the float32 noise of the differences) are
flagged. A direction scaled differently from what was evaluated, or an engine applying
the perturbation wrongly, shows up here. h is ``fraction`` of the direction's loss radius
(where the loss has risen by the tolerance, so the differences are well above rounding).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import numpy as np
import torch

from llmscape.basins.search import Criterion, Search, search
from llmscape.basins.store import DirectionResult
from llmscape.directions import Direction
from llmscape.engine import engine_on
from llmscape.probes import Evaluation

log = logging.getLogger("llmscape")

# the loss's float32 rounding noise (nats) assumed when judging second differences
LOSS_NOISE = 2e-6


class LineEvaluator:
    """Metrics at theta* + a d along the current direction: ``evaluate(a [P], groups) -> {metric: [P]}``.

    ``groups`` names the probe sets to score (None: all); the loss's data rows are always in.
    One engine per set of probe sets, built on first use over the same loaded model and moved
    to each new direction with ``set_directions`` (so its prefix and plan are made once)."""

    def __init__(self, model: torch.nn.Module, data, probes: list, engine_options: dict):
        self.model, self.data, self.probes, self.options = model, data, list(probes), engine_options
        self.direction: Direction | None = None
        self.version = 0
        self.engines: dict[frozenset, list] = {}  # groups -> [engine, evaluation, version]
        self.points = 0
        self.seconds = 0.0

    def set_direction(self, direction: Direction) -> None:
        self.direction = direction
        self.version += 1

    def engine(self, groups: frozenset):
        entry = self.engines.get(groups)
        if entry is None:
            evaluation = Evaluation(self.data, [p for p in self.probes if p.name in groups])
            entry = [
                engine_on(self.options, self.model, evaluation.evalset, [self.direction]),
                evaluation,
                self.version,
            ]
            self.engines[groups] = entry
        elif entry[2] != self.version:
            entry[0].set_directions([self.direction])
            entry[2] = self.version
        return entry[0], entry[1]

    def __call__(self, a: np.ndarray, groups: frozenset | None = None) -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        if groups is None:
            groups = frozenset(p.name for p in self.probes)
        engine, evaluation = self.engine(frozenset(groups))
        a = np.asarray(a, dtype=np.float64).reshape(-1, 1)
        out: dict[str, list] = {}
        block = max(1, int(engine.block_size))
        for i in range(0, len(a), block):
            m = evaluation.metrics(engine.evaluate(a[i : i + block]))
            for k, v in m.items():
                if k != "per_sequence_loss":
                    out.setdefault(k, []).append(v)
        self.points += len(a)
        self.seconds += time.perf_counter() - t0
        return {k: np.concatenate(v) for k, v in out.items()}

    def describe(self) -> dict:
        first = next(iter(self.engines.values()), None)
        return {} if first is None else first[0].describe()


def second_differences(evaluate: LineEvaluator, f0: float, h: float) -> dict[str, float]:
    f = evaluate(np.array([h, -h, h / 2, -h / 2]), frozenset())["loss"]
    d_h = (f[0] + f[1] - 2 * f0) / h**2
    d_half = (f[2] + f[3] - 2 * f0) / (h / 2) ** 2
    return {"h": float(h), "second_difference": float(d_h), "richardson": float((4 * d_half - d_h) / 3)}


def curvature_check(
    evaluate: LineEvaluator, f0: float, h: float, direction: Direction, target_loss, rtol: float
) -> dict:
    """Second differences of the slice at the centre versus d^T H d (module docstring)."""
    out = second_differences(evaluate, f0, h)
    hv = target_loss.hvp(direction)
    dhd = float(sum((direction[n].double() * hv[n].double().cpu()).sum() for n in direction))
    noise = 4 * LOSS_NOISE / (h / 2) ** 2
    diff = abs(out["richardson"] - dhd)
    out |= {
        "dHd": dhd,
        "ratio": out["richardson"] / dhd if dhd else float("nan"),
        "rtol": rtol,
        "noise": noise,
        "flagged": bool(not diff <= rtol * abs(dhd) + noise),
    }
    if out["flagged"]:
        log.warning(
            "curvature check: second difference %.5g (Richardson, h = %.3g) vs d^T H d = %.5g: they disagree",
            out["richardson"],
            h,
            dhd,
        )
    return out


def search_directions(
    model: torch.nn.Module,
    evaluation: Evaluation,
    directions: Iterable[tuple[str, str, Direction, dict]],
    criteria: list[Criterion],
    search_config: dict,
    engine_options: dict,
    target_loss=None,
    check: dict | None = None,
    use_prior: bool = True,
) -> tuple[dict[str, float], list[DirectionResult], dict]:
    """Search every (label, method, direction, info) in turn; later directions start from the
    median radius the earlier ones found (``use_prior``).

    Returns the centre metrics, the results and the engine's description."""
    results: list[DirectionResult] = []
    found: dict[str, list[float]] = {}
    evaluate = LineEvaluator(model, evaluation.data, evaluation.probes, engine_options)
    centre: dict[str, float] = {}
    for label, method, d, info in directions:
        t0 = time.perf_counter()
        evaluate.set_direction(d)
        if not centre:
            centre = {k: float(v[0]) for k, v in evaluate(np.zeros(1)).items()}
            evaluate.points = 0  # the centre is shared by every direction of the job
            log.info("centre: %s", ", ".join(f"{k} {v:.4g}" for k, v in centre.items()))
        points_before, seconds_before = evaluate.points, evaluate.seconds
        prior = {m: float(np.median(v)) for m, v in found.items()} if use_prior and found else None
        s: Search = search(
            evaluate,
            criteria,
            centre,
            start=search_config["start"],
            precision=search_config["precision"],
            max_radius=search_config["max_radius"],
            prior=prior,
        )
        for c in criteria:
            found.setdefault(c.metric, []).extend(v for v in s.radius[c.metric].values())
        result_check = {}
        if check and check.get("enabled") and target_loss is not None:
            r = s.radius_of("loss")
            h = check["fraction"] * (r if r > 0 else s.max_radius)
            result_check = curvature_check(evaluate, centre["loss"], h, d, target_loss, check["rtol"])
        info = {
            **info,
            "norm_of_direction": float(np.sqrt(sum(float(t.double().pow(2).sum()) for t in d.values()))),
            "engine_points": evaluate.points - points_before,
            "engine_seconds": evaluate.seconds - seconds_before,
            "seconds": time.perf_counter() - t0,
        }
        results.append(DirectionResult(label, method, s, info, result_check))
        radii = ", ".join(
            f"{c.metric} {s.radius[c.metric]['minus']:.4g}/{s.radius[c.metric]['plus']:.4g}" for c in criteria
        )
        log.info("%s: radii (minus/plus) %s; %d points in %.1fs", label, radii, s.n_evals, time.perf_counter() - t0)
    return centre, results, evaluate.describe()
