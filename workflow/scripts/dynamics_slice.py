"""One shard of a re-centred slice L(theta_t + a d + b e) at a saved step; resumes from its checkpoint."""

from typing import TYPE_CHECKING

from llmscape.dynamics.steps import compute_slice
from llmscape.jobs import run_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

i, wc = snakemake.input, snakemake.wildcards
run_job(
    lambda: compute_slice(
        i.model,
        i.data,
        i.directions,
        i.run,
        int(wc.step),
        snakemake.params.job_config,
        snakemake.params.engine,
        snakemake.output[0],
        shard=int(wc.k),
        n_shards=int(wc.n),
        label=f"dynamics {wc.data} step {wc.step} shard {wc.k}/{wc.n}",
    ),
    snakemake.log[0],
    snakemake.threads,
)
