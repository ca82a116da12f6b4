"""The basin radii of one layer entry along a shard of its random directions or one other direction."""

from typing import TYPE_CHECKING

from llmscape.basins.steps import search_basin
from llmscape.jobs import run_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

shard, n_shards = snakemake.params.shard
run_job(
    lambda: search_basin(
        snakemake.input.model,
        snakemake.input.data,
        snakemake.params.job_config,
        snakemake.params.engine,
        snakemake.output[0],
        {k.removeprefix("probe_"): v for k, v in snakemake.input.items() if k.startswith("probe_")},
        snakemake.input.get("directions"),
        shard,
        n_shards,
    ),
    snakemake.log[0],
    snakemake.threads,
)
