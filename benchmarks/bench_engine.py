"""Reference vs fast engine on the embedded SmolLM2-135M, side by side in one run.

    .venv/bin/python benchmarks/bench_engine.py [--grid 8] [--threads 2] [--cases a,b,c]

Cases (same 2-D grid for both engines, filter-normalized random directions, the
default 3 prompts):
  a  last decoder layer mlp.up_proj          target: fast >= 10x reference
  b  first decoder layer mlp.up_proj         target: fast >= 2.5x
  c  every 2-D weight of the model           target: fast >= 2x
     (all linear layers and the tied embedding/head matrix)

The fast engine is timed twice (before and after the reference) and averaged: other
jobs share this machine, so only a side-by-side ratio is meaningful.

Printed per case: points/s of each engine, the ratio, the max abs difference of the
loss grid, and the fraction of this machine's fp32 matmul peak (a 2048^3 matmul,
measured in the same run) that the fast engine reaches, counting only the FLOPs the
landscape needs: per point, the forward pass of the positions that predict a token
(real, unpadded, not the last of their sequence) through the layers from the first
perturbed one on (linear layers and causal attention), plus the head on them.
(FLOPs the engine spends on the perturbation terms x D^T are extra work, not
counted as needed.)
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import smollm2_dir  # benchmarks/ is on sys.path when run as a script

from llmscape.data import DEFAULT_PROMPTS, tokenize
from llmscape.directions import random_directions
from llmscape.engine.fast import FastEngine
from llmscape.engine.reference import ReferenceEngine
from llmscape.loss import metrics, shifted_targets
from llmscape.models import load_prepared, tensor_shapes
from llmscape.targets import select

TARGETS = {"a": 10.0, "b": 2.5, "c": 2.0}


def matmul_peak(n: int = 2048, reps: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def linear_params(layer: torch.nn.Module) -> int:
    return sum(m.weight.numel() for m in layer.modules() if isinstance(m, torch.nn.Linear))


def needed_flops(model, data, start_layer: int) -> float:
    """FLOPs per grid point the landscape needs (see module docstring)."""
    cfg = model.config
    # positions that predict a token (the last real token of a sequence predicts nothing
    # and, causally, influences nothing the loss sees)
    lengths = [n - 1 for n in data.attention_mask.sum(dim=1).tolist()]
    tokens = sum(lengths)
    n_pred = int(shifted_targets(data.input_ids, data.attention_mask)[1].sum())
    hd = cfg.hidden_size // cfg.num_attention_heads
    per_layer = 2 * tokens * linear_params(model.model.layers[0])
    per_layer += sum(4 * cfg.num_attention_heads * hd * t * (t + 1) / 2 for t in lengths)  # QK^T and AV, causal
    head = 2 * n_pred * model.lm_head.weight.numel()
    return (model.config.num_hidden_layers - start_layer) * per_layer + head


@torch.no_grad()
def reference_ce_error(model, data) -> float:
    """|loss(float32 cross_entropy) - loss(float64)| at theta*: the reference's own rounding."""
    import torch.nn.functional as F

    logits = model(input_ids=data.input_ids, attention_mask=data.attention_mask).logits[:, :-1]
    labels, mask = shifted_targets(data.input_ids, data.attention_mask)
    per = []
    for lg in (logits.float(), logits.double()):
        nll = F.cross_entropy(lg.transpose(1, 2), labels, reduction="none") * mask
        per.append((nll.sum(1) / mask.sum(1)).mean().item())
    return abs(per[0] - per[1])


def time_engine(engine, pts: np.ndarray, block: int) -> tuple[float, object]:
    t = time.perf_counter()
    outs = [engine.evaluate(pts[i : i + block]) for i in range(0, len(pts), block)]
    dt = time.perf_counter() - t
    from llmscape.loss import SequenceStats

    stats = SequenceStats(np.concatenate([o.nll_sum for o in outs]), np.concatenate([o.correct for o in outs]))
    return dt, stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid", type=int, default=8, help="points per axis (grid^2 points per case)")
    ap.add_argument("--ref-points", type=int, default=None, help="reference engine on only the first N points")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cases", default="a,b,c")
    ap.add_argument("--memory-mb", type=float, default=2048)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    mdir = smollm2_dir()
    model, tokenizer = load_prepared(mdir)
    data = tokenize(DEFAULT_PROMPTS, tokenizer)
    n_layers = model.config.num_hidden_layers
    shapes = tensor_shapes(mdir)
    peak = matmul_peak()
    print(f"model {mdir} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters), "
          f"{len(data)} prompts, {int(data.attention_mask.sum())} tokens (padded {data.input_ids.numel()}), "
          f"torch threads {torch.get_num_threads()}")
    print(f"fp32 matmul peak (2048^3): {peak / 1e9:.1f} GFLOP/s")
    print(f"float32 cross-entropy at theta* would be off by {reference_ce_error(model, data):.1e} from float64 "
          "(why the reference accumulates its loss in float64)")
    cases = {
        "a": ("last layer mlp.up_proj", ["mlp.up_proj"], "last"),
        "b": ("first layer mlp.up_proj", ["mlp.up_proj"], "first"),
        "c": ("all 2-D weights", ["."], "all"),
    }
    g = np.linspace(-1.0, 1.0, args.grid)
    pts = np.array(np.meshgrid(g, g, indexing="ij")).reshape(2, -1).T
    params = dict(model.named_parameters())
    rows = []
    for key in args.cases.split(","):
        label, patterns, layer = cases[key]
        names = select(shapes, patterns, layer, n_layers)
        weights = {n: params[n].detach() for n in names}
        dirs = random_directions(weights, 2, seed=0, norm="filter")
        ref = ReferenceEngine(model, data, dirs)
        fast = FastEngine(model, data, dirs, memory_mb=args.memory_mb)
        # warm-up (allocator, first-call overheads) on one point each
        ref.evaluate(pts[:1])
        fast.evaluate(pts[:1])
        n_ref = args.ref_points or len(pts)
        # fast timed before and after the reference (the machine is shared: average out drift)
        t_fast1, s_fast = time_engine(fast, pts, fast.block_size)
        t_ref, s_ref = time_engine(ref, pts[:n_ref], len(pts))
        t_fast2, _ = time_engine(fast, pts, fast.block_size)
        t_fast = (t_fast1 + t_fast2) / 2
        m_ref = metrics(s_ref, data.n_tokens)["loss"]
        m_fast = metrics(s_fast, data.n_tokens)["loss"]
        diff = float(np.abs(m_ref - m_fast[:n_ref]).max())
        r_ref, r_fast = n_ref / t_ref, len(pts) / t_fast
        flops = needed_flops(model, data, fast.start_layer) * r_fast
        ratio = r_fast / r_ref
        rows.append((key, label, len(names), r_ref, r_fast, ratio, diff, flops / peak))
        print(f"({key}) {label}: {len(names)} tensors, {len(pts)} points, block {fast.block_size}, "
              f"head chunk {fast.head_chunk}")
        print(f"    reference {r_ref:8.2f} points/s ({n_ref} points in {t_ref:.1f}s)")
        print(f"    fast      {r_fast:8.2f} points/s ({len(pts)} points in {t_fast1:.1f}s before, "
              f"{t_fast2:.1f}s after the reference)")
        print(f"    ratio {ratio:.1f}x (target >= {TARGETS[key]}x: {'met' if ratio >= TARGETS[key] else 'NOT met'}); "
              f"max |loss diff| {diff:.2e}; fast at {100 * flops / peak:.1f}% of fp32 matmul peak "
              f"({flops / 1e9:.1f} needed GFLOP/s)", flush=True)
    print("\nsummary")
    print(f"{'case':<28}{'ref pt/s':>10}{'fast pt/s':>11}{'ratio':>8}{'target':>8}{'max diff':>11}{'% peak':>8}")
    for key, label, _, r_ref, r_fast, ratio, diff, frac in rows:
        print(f"({key}) {label:<24}{r_ref:>10.2f}{r_fast:>11.2f}{ratio:>7.1f}x{TARGETS[key]:>7.1f}x{diff:>11.1e}"
              f"{100 * frac:>7.1f}%")


if __name__ == "__main__":
    main()
