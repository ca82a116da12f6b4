"""A short fine-tune of the model (resumes after a kill); its delta is a checkpoint direction."""

from typing import TYPE_CHECKING

from llmscape.basins.steps import finetune
from llmscape.jobs import run_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

run_job(
    lambda: finetune(snakemake.input.model, snakemake.params.job_config, snakemake.params.probes, snakemake.output[0]),
    snakemake.log[0],
    snakemake.threads,
)
