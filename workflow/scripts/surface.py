"""One shard of a landscape grid; resumes from its checkpoint after a crash."""

from typing import TYPE_CHECKING

from llmscape.jobs import run_job
from llmscape.steps import compute_surface

if TYPE_CHECKING:
    from snakemake.script import snakemake

wc = snakemake.wildcards
run_job(
    lambda: compute_surface(
        snakemake.input.model,
        snakemake.input.data,
        snakemake.input.directions,
        snakemake.params.job_config,
        snakemake.params.engine,
        snakemake.output[0],
        shard=int(wc.k),
        n_shards=int(wc.n),
        label=f"{wc.study}/{wc.layer}-{wc.direction} shard {wc.k}/{wc.n}",
        probe_paths={k.removeprefix("probe_"): v for k, v in snakemake.input.items() if k.startswith("probe_")},
    ),
    snakemake.log[0],
    snakemake.threads,
)
