"""The loss along each layer entry's extreme-curvature directions (llmscape.geometry.extreme)."""

from typing import TYPE_CHECKING

from llmscape.geometry.steps import extreme_curves
from llmscape.jobs import run_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

i, p = snakemake.input, snakemake.params
run_job(
    lambda: extreme_curves(i.model, i.data, list(i.spectra), p.section, p.engine, list(snakemake.output)),
    snakemake.log[0],
    snakemake.threads,
)
