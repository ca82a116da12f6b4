"""Running the real workflow on a tiny config (shared by the end-to-end and SLURM tests)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def tiny_config(model_dir: str | Path, shards: int = 2, points: int = 5) -> dict:
    """Two studies on a tiny local model: a sharded 2-D one with curvature, a 1-D whole-model Hessian one."""
    return {
        "model": {"name": "tiny", "source": str(model_dir)},
        "data": {"name": "two", "prompts": ["hello world, a test", "loss landscapes!"]},
        "engine": {"checkpoint_s": 0},
        "resources": {"mem_mb": 500, "runtime": 5},
        "figures": {"radii": [0.25, 0.5]},  # the layers grid reaches 0.5
        "studies": {
            "layers": {
                "tensors": [r"mlp\.up_proj"],
                "layers": ["first", "last"],
                "directions": {"random": {"norm": "filter", "seed": 1}},
                "grid": {"dims": 2, "points": points, "min": -0.5, "max": 0.5},
                "shards": shards,
                "curvature": {"enabled": True, "k": 2, "trace_probes": 4, "density_probes": 1, "density_steps": 8},
            },
            "whole": {
                "tensors": [r"proj"],
                "layers": ["all"],
                "directions": {"hessian": {"method": "hessian", "norm": "layer", "max_iter": 30}},
                "grid": {"dims": 1, "points": points},
            },
        },
    }


def write_config(workdir: str | Path, config: dict) -> Path:
    path = Path(workdir) / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_snakemake(
    workdir: str | Path, *args: str, check: bool = True, timeout: int = 600
) -> subprocess.CompletedProcess:
    """``snakemake`` on the repository's Snakefile with ``workdir/config.yaml``."""
    cmd = [
        *SNAKEMAKE,
        "-s",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(Path(workdir) / "config.yaml"),
        *args,
    ]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


def dry_run_jobs(stdout: str) -> list[tuple[str, str]]:
    """(rule, wildcards line) of each job a dry run lists."""
    blocks = re.split(r"^(?:local)?rule (\w+):$", stdout, flags=re.M)
    jobs = []
    for rule, body in zip(blocks[1::2], blocks[2::2], strict=True):
        wildcards = re.search(r"^\s+wildcards: (.*)$", body, re.M)
        jobs.append((rule, wildcards.group(1) if wildcards else ""))
    return jobs


def reversed_settings(config: dict, named: tuple[str, ...] = ("studies", "directions", "basins", "finetune", "sets")):
    """``config`` with the keys of every settings mapping in reverse order; named entries (whose order is the
    paper's) keep theirs."""

    def walk(value, key=None):
        if isinstance(value, dict):
            items = [(k, walk(v, k)) for k, v in value.items()]
            return dict(items if key in named else reversed(items))
        return [walk(v) for v in value] if isinstance(value, list) else value

    return walk(config)
