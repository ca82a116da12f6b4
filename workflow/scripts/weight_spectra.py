"""Singular values and condition numbers of every layer's weight matrices."""

from typing import TYPE_CHECKING

from llmscape.jobs import run_job
from llmscape.steps import weight_spectra

if TYPE_CHECKING:
    from snakemake.script import snakemake

out = snakemake.output
run_job(lambda: weight_spectra(snakemake.input[0], out.png, out.pdf, out.csv), snakemake.log[0], snakemake.threads)
