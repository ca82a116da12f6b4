"""Assemble a landscape from its shards (fails naming any missing or incomplete shard)."""

from typing import TYPE_CHECKING

from llmscape.jobs import run_job
from llmscape.steps import merge_shards

if TYPE_CHECKING:
    from snakemake.script import snakemake

run_job(lambda: merge_shards(list(snakemake.input), snakemake.output[0]), snakemake.log[0], snakemake.threads)
