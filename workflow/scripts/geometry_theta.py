"""Gradient norms and attention geometry at theta*, one model load (llmscape.geometry.steps.at_theta)."""

from typing import TYPE_CHECKING

from llmscape.geometry.steps import at_theta
from llmscape.jobs import run_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

p = snakemake.params
run_job(
    lambda: at_theta(snakemake.input.model, snakemake.input.data, p.section, p.model, dict(snakemake.output.items())),
    snakemake.log[0],
    snakemake.threads,
)
