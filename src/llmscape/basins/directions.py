"""Worst-case and checkpoint directions.

**Norm family.** Every direction is scaled by the same rule as the random directions it is
compared with (llmscape.directions.normalize: ``filter``, ``layer``, ``model``, ``gaussian``
or ``none``), so that a = 1 means the same size of step along each of them. Each rule fixes
norms of pieces of the direction (each output row, each tensor, or the whole); the set of
directions it admits is a product of spheres, and rescaling each piece onto its sphere
(``project``) is the Euclidean projection onto that set. ``none`` admits any direction; the
ascent below then works on the unit sphere.

**Worst direction** (``method: worst``). At a radius r, the direction of the family that
raises an objective J the most: maximize J(theta* + r d) over admissible d by projected
gradient ascent,

    d_0 = P(grad J(theta*)),   d_{t+1} = P(d_t + eta P(grad J(theta* + r d_t))),

P the projection, eta the ``step_size`` (relative: P(g) has the direction's own size), for
``steps`` steps, keeping the best iterate. d_0 is the first-order worst direction (the
gradient, projected); the iterations follow the curvature at radius r. J is the landscape
loss on the evaluation data (``objective: loss``), or minus a capability's mean log-probability
of the right choice (``objective: <probe set>``). The value of J at every iterate is the
*ascent curve*, stored with the direction.

**Checkpoint direction** (``method: checkpoint``). d = theta_other - theta* over the target
tensors, for another model of the same shapes (a prepared directory, a local directory
or hub id that transformers loads, or a fine-tune run of this workflow), then scaled per
``norm``; with ``norm: none``, a = 1 is the other model (on the targets) and a from -0.5 to
1.5 is Li et al.'s two-model interpolation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from llmscape.data import EvalSet
from llmscape.directions import Direction, normalize
from llmscape.errors import LlmscapeError
from llmscape.probes import ProbeRows, column_nll

log = logging.getLogger("llmscape")


def norm_of(direction: Direction) -> float:
    return float(torch.sqrt(sum(t.double().pow(2).sum() for t in direction.values())))


def project(direction: Direction, weights: Direction, norm: str, transposed: Collection[str] = ()) -> Direction:
    """Onto the norm family's set of directions (module docstring); ``none``: the unit sphere."""
    if norm == "none":
        scale = 1.0 / max(norm_of(direction), 1e-30)
        return {n: (t.double() * scale).float() for n, t in direction.items()}
    return normalize(direction, weights, norm, transposed)


# ------------------------------------------------------------------------------------ objectives


class Objective:
    """J(theta) for the worst direction: the landscape loss on ``data``, or minus a probe set's
    mean right-choice log-probability (the mean NLL of each item's right choice)."""

    def __init__(self, data: EvalSet, probe: ProbeRows | None = None):
        self.probe = probe
        if probe is None:
            self.rows = data
            self.weight = torch.as_tensor(1.0 / (len(data.n_tokens) * data.n_tokens), dtype=torch.float64)
            self.name = "loss"
        else:
            self.rows = probe.rows
            right = probe.column_choice == probe.answer[probe.column_item]
            w = np.where(right, 1.0 / probe.n_items, 0.0)
            self.weight = torch.as_tensor(w, dtype=torch.float64)
            self.name = f"{probe.name}/nll_right"

    def __call__(self, model: torch.nn.Module, grad: bool = False) -> torch.Tensor:
        nll, _ = column_nll(model, self.rows, grad=grad)
        return (nll * self.weight.to(nll.device)).sum()


@dataclass
class WorstDirection:
    direction: Direction
    curve: np.ndarray  # J at theta* (first entry) and at theta* + r d_t for every iterate
    best_step: int
    n_gradients: int


def worst_direction(
    model: torch.nn.Module,
    objective: Callable[[torch.nn.Module, bool], torch.Tensor],
    names: list[str],
    weights: Direction,
    norm: str,
    radius: float,
    steps: int,
    step_size: float,
    transposed: Collection[str] = (),
) -> WorstDirection:
    """Projected gradient ascent of J(theta* + r d) over the norm family (module docstring).

    The model's target tensors are written as theta* + r d for each gradient and restored
    bitwise afterwards."""
    if not radius > 0 or steps < 1 or not step_size > 0:
        raise LlmscapeError(
            f"worst direction needs radius > 0, steps >= 1, step_size > 0; got {radius}, {steps}, {step_size}"
        )
    params = dict(model.named_parameters())
    live = {n: params[n] for n in names}
    origin = {n: p.detach().clone() for n, p in live.items()}
    before = {n: p.requires_grad for n, p in live.items()}

    def value_and_grad(d: Direction | None) -> tuple[float, Direction]:
        with torch.no_grad():
            for n, p in live.items():
                w = origin[n].float() if d is None else origin[n].float() + radius * d[n].to(p.device)
                p.copy_(w.to(p.dtype))
        for p in live.values():
            p.requires_grad_(True)
        with torch.enable_grad():
            j = objective(model, True)
            grads = torch.autograd.grad(j, list(live.values()))
        for n, p in live.items():
            p.requires_grad_(before[n])
        return float(j.detach()), {n: g.detach().float().cpu() for n, g in zip(live, grads, strict=True)}

    try:
        j0, g = value_and_grad(None)
        curve = [j0]
        d = project(g, weights, norm, transposed)
        best, best_j, best_step = d, -np.inf, 0
        for t in range(steps + 1):
            j, g = value_and_grad(d)
            curve.append(j)
            if j > best_j:
                best, best_j, best_step = d, j, t
            if t == steps:
                break
            step = project(g, weights, norm, transposed)
            d = project({n: d[n] + step_size * step[n] for n in d}, weights, norm, transposed)
            log.info("worst direction: step %d/%d, J(theta* + %g d) = %.5g", t + 1, steps, radius, j)
    finally:
        with torch.no_grad():
            for n, p in live.items():
                p.copy_(origin[n])
        for n, p in live.items():
            p.requires_grad_(before[n])
    return WorstDirection(best, np.asarray(curve), best_step, steps + 2)


# ------------------------------------------------------------------------------------ checkpoints


def checkpoint_delta(
    own: Direction, other: dict[str, torch.Tensor], source: str, order: list[str] | None = None
) -> Direction:
    """theta_other - theta* over the targets; the first missing tensor or different shape (in ``order``,
    the model's order of the targets) is an error naming it."""
    for name in order or list(own):
        w = own[name]
        if name not in other:
            looks = ", ".join(list(other)[:4])
            raise LlmscapeError(f"checkpoint {source} has no tensor {name} (its tensors look like: {looks})")
        if tuple(other[name].shape) != tuple(w.shape):
            raise LlmscapeError(
                f"checkpoint {source} differs in shape: {name} is {tuple(other[name].shape)} there, "
                f"{tuple(w.shape)} in this model"
            )
    delta = {n: (other[n].double() - own[n].double()).float() for n in order or list(own)}
    if norm_of(delta) == 0:
        raise LlmscapeError(f"checkpoint {source} equals this model on the {len(own)} target tensors: no direction")
    return delta


def checkpoint_tensors(source: str, names: list[str], finetune_run: str | Path | None = None) -> tuple[dict, dict]:
    """The other model's target tensors (float32) and what they came from.

    ``source``: ``finetune:<name>`` (the run at ``finetune_run``: its last saved step, which is the
    last good one when the run stopped on a non-finite loss), or any model source
    (llmscape.models.resolve_source: a directory, a hub id, ``embedded:<name>``), loaded
    as transformers loads it so that its tensors carry this model's parameter names.
    """
    if source.startswith("finetune:"):
        from llmscape.train import load_run

        if finetune_run is None:
            raise LlmscapeError(f"checkpoint source {source!r} needs its fine-tune run directory")
        run = load_run(finetune_run)
        step = run.saved[-1]
        tensors = run.tensors(step)
        about = {"run": str(finetune_run), "step": int(step), "stopped": run.stopped, "trained": len(run.targets)}
        if run.stopped:
            log.warning("fine-tune %s stopped early (%s): its last saved step %d is used", source, run.stopped, step)
        untrained = [n for n in names if n not in tensors]
        if untrained:
            raise LlmscapeError(
                f"fine-tune {source} did not train {len(untrained)} of the target tensors (e.g. {untrained[0]}): "
                "train at least the tensors the direction targets"
            )
        return {n: tensors[n].float() for n in names}, about
    from llmscape.models import _from_pretrained, resolve_source

    resolved = resolve_source(source)
    model, _ = _from_pretrained(resolved, torch.float32, False)
    params = dict(model.named_parameters(remove_duplicate=False))
    out = {n: params[n].detach().float().clone() for n in names if n in params}  # checkpoint_delta names a missing one
    return out, {"source": source, "kind": resolved["kind"]}
