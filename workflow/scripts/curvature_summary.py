"""A study's per-layer curvature: table and figure."""

from typing import TYPE_CHECKING

from llmscape.jobs import run_job
from llmscape.steps import summarize_curvature

if TYPE_CHECKING:
    from snakemake.script import snakemake

out = snakemake.output
run_job(
    lambda: summarize_curvature(list(snakemake.input), out.png, out.pdf, out.csv), snakemake.log[0], snakemake.threads
)
