"""Directions of one landscape or basin layer entry (random, Hessian, worst-case, checkpoint), restricted to
its target tensors (llmscape.steps.make_directions)."""

from typing import TYPE_CHECKING

from llmscape.jobs import run_job
from llmscape.steps import make_directions

if TYPE_CHECKING:
    from snakemake.script import snakemake


def extras(prefix: str) -> dict:
    """Inputs named <prefix><name>: a worst direction's probe file, a checkpoint direction's fine-tune run."""
    return {k.removeprefix(prefix): v for k, v in snakemake.input.items() if k.startswith(prefix)}


run_job(
    lambda: make_directions(
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
