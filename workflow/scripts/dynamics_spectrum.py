"""The Hessian over the trained tensors at one saved step of the dynamics run."""

from typing import TYPE_CHECKING

from llmscape.dynamics.steps import spectrum_at
from llmscape.jobs import run_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

i = snakemake.input
run_job(
    lambda: spectrum_at(
        i.model, i.data, i.run, int(snakemake.wildcards.step), snakemake.params.job_config, snakemake.output[0]
    ),
    snakemake.log[0],
    snakemake.threads,
)
