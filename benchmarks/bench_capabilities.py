"""Capability metrics along a whole-model 1-D line: fast engine vs a per-point, per-choice transformers
loop, side by side in one run; and a basin search's evaluations against a dense grid.

    .venv/bin/python benchmarks/bench_capabilities.py [--points 6] [--threads 1] [--sets capitals,grammar]
                                                     [--items 16] [--search]

Embedded SmolLM2-135M (the workflow's results/smollm2-135m/model if present), the three default
prompts (the loss) and built-in probe sets (the first --items items of each), every attention and
MLP matrix of every layer moved along one filter-normalized random direction (a 1-D line of
--points coefficients in [-0.05, 0.05]).

* fast: llmscape.probes.Evaluation through the fast engine (every probe set's shared-context rows
  appended to the loss's rows; choice tokens as targets; one batched pass per block of points;
  linear_mode materialize, as the default basin study runs);
* loop: what one would write with transformers alone: per point, theta* + a d written into the
  model, then one forward per prompt for the loss and one forward per (item, choice) over
  context + choice, log-softmax, summed over the choice's tokens (lm-eval's loglikelihood).

Printed: points/s of each, the ratio (goal >= 4x), and the largest differences of loss,
accuracy and mean right-choice log-probability between them. With --search also one basin
search along that direction (loss and each set's accuracy, with the tolerances and search settings
of the default basin study in config/config.yaml): its evaluated points, their seconds, and the
points a dense 1-D grid over [-max_radius, max_radius] needs to locate the same walls to the same
precision.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import torch
from _common import smollm2_dir  # benchmarks/ is on sys.path when run as a script

from llmscape.data import DEFAULT_PROMPTS, tokenize
from llmscape.directions import random_directions
from llmscape.engine.fast import FastEngine
from llmscape.models import load_prepared, read_tensors, tensor_shapes
from llmscape.probes import Evaluation, encode, probe_specs, read_items
from llmscape.targets import select


def loop_metrics(model, tokenizer, sets: dict, n_items: int) -> dict[str, float]:
    """Loss and capability metrics by plain transformers forwards, one per prompt and one per choice."""
    losses = []
    with torch.no_grad():
        for text in DEFAULT_PROMPTS:
            ids = torch.tensor([tokenizer(text)["input_ids"]])
            losses.append(float(model(input_ids=ids, labels=ids).loss))
        out = {"loss": float(np.mean(losses))}
        for name, spec in sets.items():
            hits, right = [], []
            for item in read_items(spec.path)[:n_items]:
                ctx_text = item.context.rstrip()
                lls = []
                for choice in item.choices:
                    cont = item.context[len(ctx_text) :] + choice
                    ctx = tokenizer(ctx_text)["input_ids"]
                    whole = tokenizer(ctx_text + cont)["input_ids"]
                    logp = torch.log_softmax(model(input_ids=torch.tensor([whole])).logits[0].double(), dim=-1)
                    lls.append(sum(float(logp[t - 1, whole[t]]) for t in range(len(ctx), len(whole))))
                hits.append(int(np.argmax(lls)) == item.answer)
                right.append(lls[item.answer])
            out[f"{name}/accuracy"] = float(np.mean(hits))
            out[f"{name}/logprob"] = float(np.mean(right))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sets", default="capitals,grammar")
    parser.add_argument("--items", type=int, default=16)
    parser.add_argument("--search", action="store_true", help="also a basin search vs a dense grid")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model_dir = smollm2_dir()
    model, tokenizer = load_prepared(model_dir)
    specs = probe_specs({})
    sets = {name: specs[name] for name in args.sets.split(",")}
    data = tokenize(DEFAULT_PROMPTS, tokenizer)
    probes = [encode(spec, tokenizer, args.items) for spec in sets.values()]
    evaluation = Evaluation(data, probes)
    names = select(tensor_shapes(model_dir), ["proj"], "all", model.config.num_hidden_layers)
    weights = read_tensors(model_dir, names)
    (d,) = random_directions(weights, 1, seed=0, norm="filter")
    coeffs = np.linspace(-0.05, 0.05, args.points)
    n_choices = sum(int(p.n_choices.sum()) for p in probes)
    print(
        f"whole model: {len(names)} matrices, {sum(w.numel() for w in weights.values()):,} parameters; "
        f"{len(DEFAULT_PROMPTS)} prompts + {sum(p.n_items for p in probes)} items ({n_choices} choices) in "
        f"{len(evaluation.evalset)} rows of {int(evaluation.evalset.attention_mask.sum())} tokens; "
        f"{args.points} points, {args.threads} thread(s)",
        flush=True,
    )

    engine = FastEngine(model, evaluation.evalset, [d], linear_mode="materialize")
    engine.evaluate(coeffs[:1, None])  # warm-up
    t0 = time.perf_counter()
    fast = evaluation.metrics(engine.evaluate(coeffs[:, None]))
    fast_s = time.perf_counter() - t0

    moved = copy.deepcopy(model)
    params = dict(moved.named_parameters())
    loop, t0 = [], time.perf_counter()
    for a in coeffs:
        with torch.no_grad():
            for n in names:
                params[n].copy_(weights[n] + a * d[n])
        loop.append(loop_metrics(moved, tokenizer, sets, args.items))
    loop_s = time.perf_counter() - t0

    print(f"\n{'':28s}{'points/s':>10s}{'seconds':>10s}")
    print(f"{'fast engine (one pass)':28s}{args.points / fast_s:10.3f}{fast_s:10.1f}")
    print(f"{'transformers, per choice':28s}{args.points / loop_s:10.3f}{loop_s:10.1f}")
    print(f"ratio fast / loop: {loop_s / fast_s:.1f}x (goal >= 4x)")
    diffs = {key: max(abs(fast[key][i] - loop[i][key]) for i in range(args.points)) for key in loop[0]}
    print("largest |fast - loop| over the line: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))

    if args.search:
        from llmscape.basins.line import LineEvaluator
        from llmscape.basins.search import criteria, dense_grid_points, search

        evaluate = LineEvaluator(model, data, probes, {"kind": "fast", "linear_mode": "materialize"})
        evaluate.set_direction(d)
        centre = {k: float(v[0]) for k, v in evaluate(np.zeros(1)).items()}
        import yaml

        basin = next(iter(yaml.safe_load(Path("config/config.yaml").read_text())["basins"].values()))
        crit = criteria(basin["tolerance"], list(sets))
        t0 = time.perf_counter()
        s = search(evaluate, crit, centre, **basin["search"])
        took = time.perf_counter() - t0
        walls = [min(s.radius[c.metric].values()) for c in crit]
        dense = max(dense_grid_points(r, s.precision, s.max_radius) for r in walls)
        print(
            f"\nbasin search along the line's direction: {s.n_evals} points in {took:.1f}s "
            f"(radii {', '.join(f'{c.metric} {r:.3g}' for c, r in zip(crit, walls, strict=True))}); "
            f"a dense grid over [-{s.max_radius:g}, {s.max_radius:g}] at the same precision "
            f"(step {s.precision:g} x the nearest wall): {dense} points, {dense / s.n_evals:.0f}x more"
        )


if __name__ == "__main__":
    main()
