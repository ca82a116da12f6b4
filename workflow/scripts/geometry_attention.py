"""Attention weights, scores and per-head weight spectra for the prompt (llmscape.geometry.attention)."""

from typing import TYPE_CHECKING

from llmscape.geometry.steps import attention
from llmscape.jobs import run_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

p, o = snakemake.params, snakemake.output
run_job(
    lambda: attention(snakemake.input.model, p.section, p.model, o.h5, o.csv),
    snakemake.log[0],
    snakemake.threads,
)
