"""Tokenize the evaluation set once, with the model's own tokenizer."""

from typing import TYPE_CHECKING

from llmscape.jobs import run_job
from llmscape.steps import prepare_data

if TYPE_CHECKING:
    from snakemake.script import snakemake

run_job(
    lambda: prepare_data(snakemake.input.model, snakemake.params.data, snakemake.output[0]),
    snakemake.log[0],
    snakemake.threads,
)
