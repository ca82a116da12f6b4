"""One shard of the landscape around theta_T in the plane of the trajectory's two principal directions."""

from typing import TYPE_CHECKING

from llmscape.dynamics.steps import compute_pca_slice
from llmscape.jobs import run_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

i, p = snakemake.input, snakemake.params
run_job(
    lambda: compute_pca_slice(
        i.model,
        i.data,
        i.directions,
        i.trajectory,
        i.run,
        p.job_config,
        p.engine,
        snakemake.output[0],
        shard=p.shard,
        n_shards=p.n_shards,
        label=f"dynamics PCA plane shard {p.shard}/{p.n_shards}",
    ),
    snakemake.log[0],
    snakemake.threads,
)
