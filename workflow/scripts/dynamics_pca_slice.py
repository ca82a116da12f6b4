"""One shard of the landscape around theta_T in the plane of the trajectory's two principal directions."""

from typing import TYPE_CHECKING

from llmscape.dynamics.steps import compute_pca_slice
from llmscape.jobs import run_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

i, wc = snakemake.input, snakemake.wildcards
run_job(
    lambda: compute_pca_slice(
        i.model,
        i.data,
        i.directions,
        i.trajectory,
        i.run,
        snakemake.params.job_config,
        snakemake.params.engine,
        snakemake.output[0],
        shard=int(wc.k),
        n_shards=int(wc.n),
        label=f"dynamics PCA plane shard {wc.k}/{wc.n}",
    ),
    snakemake.log[0],
    snakemake.threads,
)
