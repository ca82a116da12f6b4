"""The tiny Llama's exact Hessian beside the estimators (llmscape.geometry.exact)."""

from typing import TYPE_CHECKING

from llmscape.geometry.steps import exact_spectrum
from llmscape.jobs import run_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

o = snakemake.output
run_job(
    lambda: exact_spectrum(snakemake.input.data, snakemake.params.section, o.run, o.exact, o.estimate, o.csv),
    snakemake.log[0],
    snakemake.threads,
)
