"""The dynamics study's training run (resumes from <run>.partial after a kill)."""

from typing import TYPE_CHECKING

from llmscape.dynamics.steps import train_run
from llmscape.jobs import run_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

run_job(
    lambda: train_run(snakemake.input.model, snakemake.input.data, snakemake.params.job_config, snakemake.output[0]),
    snakemake.log[0],
    snakemake.threads,
)
