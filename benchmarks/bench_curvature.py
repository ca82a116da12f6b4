"""Curvature on the embedded SmolLM2-135M: HVP cost and eigensolver efficiency.

    .venv/bin/python benchmarks/bench_curvature.py [--layer 15] [--reps 5] [--threads N]

Target: ``model.layers.<layer>.mlp.up_proj.weight`` (default: the middle layer), eval
data: the 3 default prompts. Prints

1. the time of one forward+backward (the model's own forward, full logits, gradient
   w.r.t. the target only) against one Hessian-vector product (``llmscape.curvature.TargetLoss``:
   chunked head, with and without prefix reuse), and the ratio (target: HVP <= 4x);
2. the HVPs Lanczos and deflated power iteration need until their top-2 eigenvalues
   stay within 1e-3 (relative) of a tight reference (Lanczos, tol 1e-6), and the HVPs
   each spends until its own stopping rule (residual <= 1e-3 |lambda|) fires; and
   whether the two agree.

The prepared model is read from results/smollm2-135m/model when it exists, else
converted once into a temporary directory.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from _common import smollm2_dir  # benchmarks/ is on sys.path when run as a script

from llmscape.curvature import HessianOperator, Lanczos, PowerIteration, TargetLoss
from llmscape.curvature.eigen import hvps_to_reach
from llmscape.data import DEFAULT_PROMPTS, tokenize
from llmscape.loss import shifted_targets
from llmscape.models import load_prepared


def median_time(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def forward_backward(model, data, target):
    """The plain path: model forward with full logits, the landscape loss, gradient w.r.t. the target."""
    param = dict(model.named_parameters())[target]
    ids, mask = data.input_ids, data.attention_mask

    def run():
        param.requires_grad_(True)
        try:
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
            labels, label_mask = shifted_targets(ids, mask)
            nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, reduction="none")
            loss = ((nll * label_mask).sum(1) / label_mask.sum(1)).mean()
            return torch.autograd.grad(loss, [param])
        finally:
            param.requires_grad_(False)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layer", type=int, default=None, help="decoder layer of the up_proj target (default: middle)")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--max-iter", type=int, default=300)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    path = smollm2_dir()
    model, tokenizer = load_prepared(path)
    data = tokenize(DEFAULT_PROMPTS, tokenizer)
    layer = model.config.num_hidden_layers // 2 if args.layer is None else args.layer
    target = f"model.layers.{layer}.mlp.up_proj.weight"
    print(
        f"model {path} ({model.config.num_hidden_layers} layers), target {target}, "
        f"{len(data)} sequences / {int(data.n_tokens.sum())} predicted tokens, "
        f"torch threads {torch.get_num_threads()}"
    )

    # 1. cost of one HVP
    t_fb = median_time(forward_backward(model, data, target), args.reps)
    reuse = HessianOperator(TargetLoss(model, data, [target], prefix_reuse=True))
    full = HessianOperator(TargetLoss(model, data, [target], prefix_reuse=False))
    v = torch.randn(reuse.n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t_reuse = median_time(lambda: reuse.matvec(v), args.reps)
    t_full = median_time(lambda: full.matvec(v), args.reps)
    print(f"\nn_params {reuse.n:,}; prefix reuse active: {reuse.loss.prefix is not None}; median of {args.reps}:")
    print(f"  forward+backward (full model, full logits)    {t_fb * 1e3:8.1f} ms")
    print(
        f"  HVP, prefix reuse (layers {layer}..) + chunked head {t_reuse * 1e3:6.1f} ms   ratio {t_reuse / t_fb:.2f}x"
    )
    print(f"  HVP, full model + chunked head                {t_full * 1e3:8.1f} ms   ratio {t_full / t_fb:.2f}x")
    diff = float((reuse.matvec(v) - full.matvec(v)).norm() / full.matvec(v).norm())
    print(f"  prefix-reuse vs full HVP: relative difference {diff:.1e}")

    # 2. eigensolvers
    op = reuse
    t0, start = time.perf_counter(), op.n_hvp
    ref = Lanczos(tol=1e-6, max_iter=args.max_iter, seed=1).eigenpairs(op, 2)
    print(
        f"\nreference top-2 (Lanczos, tol 1e-6): {ref.eigenvalues} residuals {ref.residuals} "
        f"converged {ref.converged} ({op.n_hvp - start} HVPs, {time.perf_counter() - t0:.0f}s)"
    )
    results = {}
    for name, solver in (
        ("lanczos", Lanczos(tol=1e-3, max_iter=args.max_iter, seed=0)),
        ("power", PowerIteration(tol=1e-3, max_iter=args.max_iter, seed=0)),
    ):
        t0 = time.perf_counter()
        pairs = solver.eigenpairs(op, 2)
        results[name] = pairs
        reach = hvps_to_reach(pairs.history, ref.eigenvalues, 1e-3)
        rel = np.abs(pairs.eigenvalues - ref.eigenvalues) / np.abs(ref.eigenvalues)
        print(
            f"  {name:8s} top-2 {pairs.eigenvalues} | HVPs to 1e-3 of reference: {reach} | "
            f"HVPs to its own stop (tol 1e-3): {pairs.n_hvp} | converged {pairs.converged} | "
            f"residual/|lambda| {pairs.residuals / np.abs(pairs.eigenvalues)} | rel. error {rel} | "
            f"{time.perf_counter() - t0:.0f}s"
        )
    agree = np.abs(results["lanczos"].eigenvalues - results["power"].eigenvalues) / np.abs(ref.eigenvalues)
    print(
        f"  Lanczos vs power: relative difference {agree} -> {'agree' if np.all(agree <= 1e-3) else 'DISAGREE'} to 1e-3"
    )


if __name__ == "__main__":
    main()
