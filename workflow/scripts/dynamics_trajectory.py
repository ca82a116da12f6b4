"""The dynamics run seen from the fixed plane and from its PCA plane; the next-token table."""

from typing import TYPE_CHECKING

from llmscape.dynamics.steps import trajectory
from llmscape.jobs import run_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

i, out = snakemake.input, snakemake.output
run_job(
    lambda: trajectory(
        i.model,
        {"phrase": i.phrase, "corpus": i.corpus},
        i.directions,
        i.run,
        snakemake.params.job_config,
        snakemake.params.engine,
        out.trajectory,
        out.pca_directions,
    ),
    snakemake.log[0],
    snakemake.threads,
)
