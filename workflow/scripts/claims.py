"""The claims table (tables/claims.csv): each claim's measure, value(s) and verdict (llmscape.claims)."""

from typing import TYPE_CHECKING

from llmscape.jobs import run_job
from llmscape.steps import claims_table

if TYPE_CHECKING:
    from snakemake.script import snakemake

run_job(
    lambda: claims_table(dict(snakemake.input.items()), snakemake.params.config, snakemake.output[0]),
    snakemake.log[0],
    snakemake.threads,
)
