"""Tokenize the probe sets the config uses, score them at theta*, and write their table."""

from typing import TYPE_CHECKING

from llmscape.basins.steps import prepare_probes
from llmscape.jobs import run_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

run_job(
    lambda: prepare_probes(
        snakemake.input.model,
        snakemake.params.probes,
        snakemake.params.names,
        list(snakemake.output.probes),
        snakemake.output.table,
    ),
    snakemake.log[0],
    snakemake.threads,
)
