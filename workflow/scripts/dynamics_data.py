"""The dynamics study's evaluation sets: the phrase and the corpus windows."""

from typing import TYPE_CHECKING

from llmscape.dynamics.steps import prepare_datasets
from llmscape.jobs import run_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

p, out = snakemake.params, snakemake.output
run_job(
    lambda: prepare_datasets(snakemake.input.model, p.phrase, p.corpus, out.phrase, out.corpus),
    snakemake.log[0],
    snakemake.threads,
)
