"""The model's curvature table: one row per spectrum (study, layer entry)."""

from typing import TYPE_CHECKING

from llmscape.jobs import run_job
from llmscape.steps import curvature_table

if TYPE_CHECKING:
    from snakemake.script import snakemake

run_job(lambda: curvature_table(list(snakemake.input), snakemake.output[0]), snakemake.log[0], snakemake.threads)
