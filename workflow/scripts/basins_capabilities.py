"""A landscape's loss and capability grids, each on its own and all normalized together."""

from typing import TYPE_CHECKING

from llmscape.basins.steps import plot_capabilities
from llmscape.jobs import run_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

run_job(
    lambda: plot_capabilities(snakemake.input[0], snakemake.output.png, snakemake.output.pdf),
    snakemake.log[0],
    snakemake.threads,
)
