"""A study's landscapes side by side, and its summary table."""

from typing import TYPE_CHECKING

from llmscape.jobs import run_job
from llmscape.steps import compare_study

if TYPE_CHECKING:
    from snakemake.script import snakemake

out, params = snakemake.output, snakemake.params
run_job(
    lambda: compare_study(
        list(snakemake.input), out.png, out.pdf, out.csv, params.clip, params.radii, params.shared_scale
    ),
    snakemake.log[0],
    snakemake.threads,
)
