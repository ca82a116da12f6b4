"""Static (PNG, PDF) and interactive (HTML) figures of one landscape."""

from typing import TYPE_CHECKING

from llmscape.jobs import run_job
from llmscape.steps import render_landscape

if TYPE_CHECKING:
    from snakemake.script import snakemake

out = snakemake.output
run_job(
    lambda: render_landscape(snakemake.input[0], out.png, out.pdf, out.html, snakemake.params.clip),
    snakemake.log[0],
    snakemake.threads,
)
