"""Layer streaming on a Llama-3.2-1B-shaped model: peak memory and exactness.

    .venv/bin/python benchmarks/bench_streaming.py [--dir /tmp/llmscape-bench/llama1b] [--grid 3]

1. Writes a random-weight model with Llama-3.2-1B's shapes (hidden 2048, intermediate
   8192, 16 layers, 32 heads / 8 kv heads, vocab 128256, tied embeddings; ~4.9 GB in
   fp32) as sharded safetensors, one tensor group at a time: the model itself is
   only ever an empty (meta) skeleton, so writing it needs about one shard of RAM.
2. Makes two filter-normalized directions for the middle layer's mlp.up_proj and
   stores them (HDF5, as the workflow does). In a fresh subprocess, evaluates a small
   landscape with the streaming fast engine and reports that process's peak RSS
   (VmHWM) against the size of the weights on disk. Target: <= 40%.
3. In another subprocess, loads the whole model (it fits in 24 GiB) and evaluates the
   same grid with the non-streaming fast engine and the reference engine; the loss
   grids must agree.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

DEFAULT_DIR = Path(tempfile.gettempdir()) / "llmscape-bench" / "llama-3.2-1b-shaped"
TARGET = "mlp.up_proj"


def config():
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
        num_attention_heads=32, num_key_value_heads=8, head_dim=64, max_position_embeddings=4096,
        rms_norm_eps=1e-5, tie_word_embeddings=True, rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
    )


def write_model(out: Path) -> None:
    """Random weights, written shard by shard (embedding; then one shard per two layers)."""
    from accelerate import init_empty_weights
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    if (out / "model.safetensors.index.json").exists():
        return
    out.mkdir(parents=True, exist_ok=True)
    cfg = config()
    with init_empty_weights():
        skeleton = AutoModelForCausalLM.from_config(cfg)
    skeleton.tie_weights()  # from_config on meta leaves the head untied: store it once, as tied
    shapes = {n: tuple(p.shape) for n, p in skeleton.named_parameters()}  # tied head listed once
    groups: dict[str, list[str]] = {}
    for name in shapes:
        if ".layers." in name:
            shard = int(name.split(".layers.")[1].split(".")[0]) // 2
            groups.setdefault(f"model-layers{shard:02d}.safetensors", []).append(name)
        else:
            groups.setdefault("model-embed.safetensors", []).append(name)
    gen = torch.Generator().manual_seed(0)
    weight_map, total = {}, 0
    t0 = time.perf_counter()
    for fname, names in groups.items():
        tensors = {}
        for n in names:
            if n.endswith("norm.weight"):
                tensors[n] = 1.0 + 0.1 * torch.randn(shapes[n], generator=gen)
            else:
                tensors[n] = 0.02 * torch.randn(shapes[n], generator=gen)
            weight_map[n] = fname
            total += tensors[n].numel() * 4
        save_file(tensors, str(out / fname), metadata={"format": "pt"})
        del tensors
    (out / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1)
    )
    cfg.save_pretrained(out)
    print(f"wrote {total / 1e9:.2f} GB of random fp32 weights to {out} in {time.perf_counter() - t0:.0f}s", flush=True)


def eval_set():
    from llmscape.data import EvalSet

    gen = torch.Generator().manual_seed(1)
    lengths = [24, 17, 12]
    ids = torch.zeros((3, max(lengths)), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(3, 128256, (n,), generator=gen)
        mask[i, :n] = 1
    return EvalSet(ids, mask, [f"random {n} tokens" for n in lengths])


def write_directions(model_dir: Path, path: Path) -> None:
    """Directions made once, as the workflow makes them, and stored in HDF5 (float32)."""
    from llmscape.directions import random_directions, save_directions
    from llmscape.models import read_tensors, tensor_shapes
    from llmscape.targets import select

    names = select(tensor_shapes(model_dir), [TARGET], "middle", config().num_hidden_layers)
    dirs = random_directions(read_tensors(model_dir, names), 2, seed=0, norm="filter")
    save_directions(path, dirs, {"targets": names, "norm": "filter", "seed": 0})


def peak_rss_bytes() -> int:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss over from
    the parent across fork+exec, so a child of a big parent would report the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(mode: str, model_dir: Path, grid: int, memory_mb: float, out: Path) -> None:
    from llmscape.engine.fast import FastEngine
    from llmscape.loss import metrics

    torch.set_num_threads(2)
    from llmscape.directions import load_directions

    data = eval_set()
    dirs, attrs = load_directions(model_dir / "directions.h5")
    names = attrs["recipe"]["targets"]
    g = np.linspace(-1.0, 1.0, grid)
    pts = np.array(np.meshgrid(g, g, indexing="ij")).reshape(2, -1).T
    result = {"mode": mode, "targets": names}
    t0 = time.perf_counter()
    if mode == "stream":
        engine = FastEngine(model_dir, data, dirs, stream=True, memory_mb=memory_mb)
        result["setup_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        result["loss"] = metrics(engine.evaluate(pts), data.n_tokens)["loss"].tolist()
        result["eval_s"] = time.perf_counter() - t0
        result["describe"] = engine.describe()
    else:
        from llmscape.engine.reference import ReferenceEngine
        model = _load(model_dir)
        result["setup_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        engine = FastEngine(model, data, dirs, memory_mb=memory_mb)
        result["loss"] = metrics(engine.evaluate(pts), data.n_tokens)["loss"].tolist()
        result["eval_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        ref = ReferenceEngine(model, data, dirs).evaluate(pts)
        result["reference_loss"] = metrics(ref, data.n_tokens)["loss"].tolist()
        result["reference_s"] = time.perf_counter() - t0
    result["peak_rss_bytes"] = peak_rss_bytes()
    out.write_text(json.dumps(result))


def _load(model_dir: Path):
    """The whole model in RAM, eval mode, eager attention (as load_prepared, minus the tokenizer)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
    model.eval().requires_grad_(False)
    return model


def run_child(mode: str, args) -> dict:
    out = Path(tempfile.mkstemp(suffix=f"-{mode}.json")[1])
    cmd = [sys.executable, __file__, "--child", mode, "--dir", str(args.dir), "--grid", str(args.grid),
           "--memory-mb", str(args.memory_mb), "--out", str(out)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    result = json.loads(out.read_text())
    result["wall_s"] = time.perf_counter() - t0
    out.unlink()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--grid", type=int, default=3)
    ap.add_argument("--memory-mb", type=float, default=1024)
    ap.add_argument("--skip-full", action="store_true", help="skip the non-streaming comparison (needs ~6 GB RAM)")
    ap.add_argument("--child", choices=["stream", "full"])
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.dir, args.grid, args.memory_mb, args.out)
        return
    write_model(args.dir)
    if not (args.dir / "directions.h5").exists():
        write_directions(args.dir, args.dir / "directions.h5")
    size = sum(f.stat().st_size for f in args.dir.glob("*.safetensors"))
    print(f"model on disk: {size / 2**30:.2f} GiB ({size / 1e9:.2f} GB) of fp32 safetensors in {args.dir}")
    s = run_child("stream", args)
    frac = s["peak_rss_bytes"] / size
    print(f"streaming  ({args.grid}x{args.grid} grid, targets {s['targets']}, memory_mb {args.memory_mb:g}):")
    print(f"    peak RSS {s['peak_rss_bytes'] / 2**30:.2f} GiB = {100 * frac:.1f}% of the weights on disk "
          f"(target <= 40%: {'met' if frac <= 0.4 else 'NOT met'})")
    print(f"    setup (prefix through layers 0..{s['describe']['start_layer'] - 1}) {s['setup_s']:.1f}s, "
          f"grid {s['eval_s']:.1f}s, block {s['describe']['block_size']}, head chunk {s['describe']['head_chunk']}")
    print(f"    loss {np.round(s['loss'], 5).tolist()}")
    if args.skip_full:
        return
    f = run_child("full", args)
    d_fast = float(np.abs(np.array(s["loss"]) - np.array(f["loss"])).max())
    d_ref = float(np.abs(np.array(s["loss"]) - np.array(f["reference_loss"])).max())
    print(f"whole model in RAM: peak RSS {f['peak_rss_bytes'] / 2**30:.2f} GiB "
          f"({100 * f['peak_rss_bytes'] / size:.0f}% of the weights), load {f['setup_s']:.1f}s, "
          f"fast engine {f['eval_s']:.1f}s, reference engine {f['reference_s']:.1f}s")
    print(f"    max |loss diff| streaming vs non-streaming fast engine: {d_fast:.2e}")
    print(f"    max |loss diff| streaming vs reference engine:          {d_ref:.2e}")


if __name__ == "__main__":
    main()
