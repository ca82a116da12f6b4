"""The dynamics study's tables and figures (static panel, step-slider animation, loss, curvature, PCA)."""

from typing import TYPE_CHECKING

from llmscape.dynamics.report import make_report
from llmscape.jobs import run_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

i, out = snakemake.input, snakemake.output
tables = {k: out[k] for k in ("steps", "roughness", "next_token")}
figures = {k: v for k, v in out.items() if k not in tables}
run_job(
    lambda: make_report(i.trajectory, list(i.slices), i.pca, list(i.spectra), tables, figures, snakemake.params.clip),
    snakemake.log[0],
    snakemake.threads,
)
