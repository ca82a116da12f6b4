"""Hessian spectrum of the loss on one layer entry's targets."""

from typing import TYPE_CHECKING

from llmscape.jobs import run_job
from llmscape.steps import compute_curvature

if TYPE_CHECKING:
    from snakemake.script import snakemake

run_job(
    lambda: compute_curvature(
        snakemake.input.model, snakemake.input.data, snakemake.params.job_config, snakemake.output[0]
    ),
    snakemake.log[0],
    snakemake.threads,
)
