"""The geometry section's figures and the sharpness table (llmscape.geometry.report)."""

from typing import TYPE_CHECKING

from llmscape.geometry.steps import report
from llmscape.jobs import run_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

run_job(
    lambda: report(dict(snakemake.input.items()), dict(snakemake.output.items()), snakemake.params.section),
    snakemake.log[0],
    snakemake.threads,
)
