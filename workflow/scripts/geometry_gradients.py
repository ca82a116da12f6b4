"""Gradient norms at theta* per tensor and per layer (llmscape.geometry.gradients)."""

from typing import TYPE_CHECKING

from llmscape.geometry.steps import gradients
from llmscape.jobs import run_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

i, o = snakemake.input, snakemake.output
run_job(
    lambda: gradients(i.model, i.data, snakemake.params.model, o.tensors_csv, o.layers_csv, o.png, o.pdf),
    snakemake.log[0],
    snakemake.threads,
)
