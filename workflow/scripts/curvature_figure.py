"""A study's per-layer curvature figure."""

from typing import TYPE_CHECKING

from llmscape.jobs import run_job
from llmscape.steps import plot_curvature

if TYPE_CHECKING:
    from snakemake.script import snakemake

out = snakemake.output
run_job(lambda: plot_curvature(list(snakemake.input), out.png, out.pdf), snakemake.log[0], snakemake.threads)
