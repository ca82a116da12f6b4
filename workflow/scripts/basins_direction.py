"""A basin study's worst-case or checkpoint direction over one layer entry's targets."""

from typing import TYPE_CHECKING

from llmscape.basins.steps import make_direction
from llmscape.jobs import run_job

if TYPE_CHECKING:
    from snakemake.script import snakemake


def extras(prefix: str) -> dict:
    return {k.removeprefix(prefix): v for k, v in snakemake.input.items() if k.startswith(prefix)}


run_job(
    lambda: make_direction(
        snakemake.input.model,
        snakemake.input.data,
        snakemake.params.job_config,
        snakemake.output[0],
        extras("probe_"),
        extras("finetune_"),
    ),
    snakemake.log[0],
    snakemake.threads,
)
