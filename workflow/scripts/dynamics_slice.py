"""One shard of a re-centred slice L(theta_t + a d + b e) at a saved step; resumes from its checkpoint."""

from typing import TYPE_CHECKING

from llmscape.dynamics.steps import compute_slice
from llmscape.jobs import run_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

i, wc, p = snakemake.input, snakemake.wildcards, snakemake.params
run_job(
    lambda: compute_slice(
        i.model,
        i.data,
        i.directions,
        i.run,
        int(wc.step),
        p.job_config,
        p.engine,
        snakemake.output[0],
        shard=p.shard,
        n_shards=p.n_shards,
        label=f"dynamics {wc.data} step {wc.step} shard {p.shard}/{p.n_shards}",
    ),
    snakemake.log[0],
    snakemake.threads,
)
