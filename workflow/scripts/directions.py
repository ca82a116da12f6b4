"""Directions of one landscape, restricted to its target tensors."""

from typing import TYPE_CHECKING

from llmscape.jobs import run_job
from llmscape.steps import make_directions

if TYPE_CHECKING:
    from snakemake.script import snakemake

run_job(
    lambda: make_directions(
        snakemake.input.model, snakemake.input.data, snakemake.params.job_config, snakemake.output[0]
    ),
    snakemake.log[0],
    snakemake.threads,
)
