"""A basin study's tables (every radius; the distributions with bootstrap CIs) and its figure."""

from typing import TYPE_CHECKING

from llmscape.basins.steps import basin_report
from llmscape.jobs import run_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

out = snakemake.output
run_job(
    lambda: basin_report(list(snakemake.input), snakemake.params.job_config, out.radii, out.summary, out.png, out.pdf),
    snakemake.log[0],
    snakemake.threads,
)
