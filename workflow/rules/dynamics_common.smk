# Paths and lookups of the dynamics study's rules (workflow/rules/dynamics.smk).
from llmscape.dynamics.corpus import find_corpus
from llmscape.dynamics.settings import (
    data_config,
    enabled as dynamics_enabled,
    job_config as dynamics_job,
    slice_steps,
)
from llmscape.dynamics.steps import hessian_estimate_at, slice_estimate
from llmscape.train import load_run

DYN = f"{R}/dynamics"
DYN_SECTION = config["dynamics"]
# The corpus is found at parse time (config validation has checked that one source exists), so that
# editing it reruns what depends on it.
CORPUS = (
    str(find_corpus(DYN_SECTION["corpus"]["sources"]))
    if dynamics_enabled(config)
    else []
)
DYN_TRAIN_DATA = f"{DYN}/data/{DYN_SECTION['train']['data']}.h5"
DYN_SHARDS = DYN_SECTION["shards"]
# A slice (and the PCA landscape) with shards: 1 is written by its one job; with more, by
# dynamics_merge from shard files, each its own job.
DYN_SLICE_JOB = (
    "slices/{data}/step-{step}"
    if DYN_SHARDS == 1
    else "slices/{data}/step-{step}/shard-{k}-of-{n}"
)
DYN_PCA_JOB = "pca" if DYN_SHARDS == 1 else "pca/shard-{k}-of-{n}"
DYN_TABLES = {
    name: f"{R}/tables/dynamics/{name}.csv"
    for name in ("steps", "roughness", "next_token")
}
DYN_FIGURES = {
    f"{name}_{ext}": f"{R}/figures/dynamics/{name}.{ext}"
    for name in ("slices", "loss", "sharpness", "pca")
    for ext in ("png", "pdf")
} | {"slices_html": f"{R}/figures/dynamics/slices.html"}
# What `snakemake --report` shows of the dynamics study, each with its caption (workflow/report/).
DYN_REPORTED = {
    "steps": "dynamics_tables",
    "roughness": "dynamics_tables",
    "next_token": "dynamics_tables",
    "slices_png": "dynamics_slices",
    "loss_png": "dynamics_loss",
    "sharpness_png": "dynamics_sharpness",
    "pca_png": "dynamics_pca",
}


wildcard_constraints:
    data="phrase|corpus",
    step="[0-9]+",


def dynamics_saved():
    """The steps the finished training run saved (known once the checkpoint rule has run)."""
    return load_run(checkpoints.dynamics_train.get().output[0]).saved


def dynamics_shards(prefix):
    return [f"{prefix}/shard-{k}-of-{DYN_SHARDS}.h5" for k in range(DYN_SHARDS)]


def dynamics_shard(wc):
    """The shard index of a slice or PCA job (0 when a job computes the whole grid)."""
    return int(wc.get("k", 0))


def dynamics_report_inputs(wc):
    saved = dynamics_saved()
    curvature = DYN_SECTION["curvature"]["enabled"]
    return {
        "trajectory": f"{DYN}/trajectory.h5",
        "pca": f"{DYN}/pca.h5",
        "slices": [
            f"{DYN}/slices/{data}/step-{step}.h5"
            for data in ("phrase", "corpus")
            for step in slice_steps(DYN_SECTION, data, saved)
        ],
        "spectra": [f"{DYN}/spectra/step-{s}.h5" for s in saved] if curvature else [],
    }


def dynamics_outputs():
    """The dynamics study's tables and figures (none when it is not enabled)."""
    if not dynamics_enabled(config):
        return []
    return list(DYN_TABLES.values()) + list(DYN_FIGURES.values())


def dynamics_report_outputs():
    """The dynamics report's outputs by name, those in DYN_REPORTED marked for `snakemake --report`."""
    out = {**DYN_TABLES, **DYN_FIGURES}
    for name, caption in DYN_REPORTED.items():
        out[name] = report(
            out[name], caption=f"../report/{caption}.rst", category="Dynamics"
        )
    return out
