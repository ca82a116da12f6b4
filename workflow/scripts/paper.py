"""Render paper/paper.md.j2 with every number and figure taken from results/."""

from pathlib import Path
from typing import TYPE_CHECKING

from llmscape.jobs import run_job
from llmscape.paper import render, study_context
from llmscape.steps import landscape_title
from llmscape.store import Landscape

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main():
    inp, config = snakemake.input, snakemake.params.config
    out_dir = Path(snakemake.output[0]).parent
    figures = {name: [] for name in config["studies"]}
    for study, h5, png, html in zip(snakemake.params.studies, inp.landscapes, inp.pngs, inp.htmls, strict=True):
        figures[study].append((landscape_title(Landscape.load(h5)), png, html))
    curvature_study = snakemake.params.curvature_studies
    # curvature_outputs(): the model's table, then one figure per curvature study
    table, pngs = (inp.curvature[0], inp.curvature[1:]) if curvature_study else (None, [])
    curvature = dict(zip(curvature_study, pngs, strict=True))
    studies = [
        study_context(name, config["studies"][name], csv, png, figures[name], out_dir, table, curvature.get(name))
        for name, csv, png in zip(config["studies"], inp.tables, inp.compare, strict=True)
    ]
    render(inp.template, snakemake.output[0], config, inp.model, inp.data, studies, (inp.weights_csv, inp.weights_png))


run_job(main, snakemake.log[0], snakemake.threads)
