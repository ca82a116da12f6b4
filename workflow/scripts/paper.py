"""Render the paper (paper/paper.md.j2) with every number and figure taken from results/, and its explorer
and provenance pages."""

from typing import TYPE_CHECKING

from llmscape.jobs import run_job
from llmscape.steps import render_paper

if TYPE_CHECKING:
    from snakemake.script import snakemake

# named outputs (html, explorer, provenance); a rule with one unnamed output gets the other two beside it
outputs = dict(snakemake.output.items()) or snakemake.output[0]

run_job(
    lambda: render_paper(dict(snakemake.input.items()), snakemake.params.config, outputs),
    snakemake.log[0],
    snakemake.threads,
)
