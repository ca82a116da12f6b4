"""Curves along extreme-curvature directions, gradient norms and attention geometry at theta*, one model load
(llmscape.geometry.steps.at_theta)."""

from typing import TYPE_CHECKING

from llmscape.geometry.steps import at_theta
from llmscape.jobs import run_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

i, p = snakemake.input, snakemake.params
run_job(
    lambda: at_theta(i.model, i.data, p.section, p.model, p.engine, dict(snakemake.output.items()), list(i.spectra)),
    snakemake.log[0],
    snakemake.threads,
)
