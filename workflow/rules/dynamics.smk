# Training dynamics (src/llmscape/dynamics/, config section `dynamics`): a short training run,
# re-centred slices at its saved steps (phrase and corpus), curvature along training and the
# trajectory's PCA plane. The run is a checkpoint: the slices follow the steps it saved
# (a diverged run stops early and keeps fewer).
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
DYN_TABLES = {
    name: f"{R}/tables/dynamics/{name}.csv"
    for name in ("steps", "roughness", "next_token")
}
DYN_FIGURES = {
    f"{name}_{ext}": f"{R}/figures/dynamics/{name}.{ext}"
    for name in ("slices", "loss", "sharpness", "pca")
    for ext in ("png", "pdf")
} | {"slices_html": f"{R}/figures/dynamics/slices.html"}


wildcard_constraints:
    data="phrase|corpus",
    step="[0-9]+",


def dynamics_saved():
    """The steps the finished training run saved (known once the checkpoint rule has run)."""
    return load_run(checkpoints.dynamics_train.get().output[0]).saved


def dynamics_shards(prefix):
    return [f"{prefix}/shard-{k}-of-{DYN_SHARDS}.h5" for k in range(DYN_SHARDS)]


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


rule dynamics_data:
    input:
        model=MODEL_DIR,
        corpus=CORPUS,
    output:
        phrase=f"{DYN}/data/phrase.h5",
        corpus=f"{DYN}/data/corpus.h5",
    log:
        f"{R}/logs/dynamics/data.log",
    conda:
        ENV
    threads: 1
    resources:
        **LIGHT,
    params:
        phrase=lambda wc: data_config(config, "phrase"),
        corpus=lambda wc: data_config(config, "corpus", CORPUS),
    script:
        "../scripts/dynamics_data.py"


rule dynamics_directions:
    input:
        model=MODEL_DIR,
        data=DYN_TRAIN_DATA,
    output:
        f"{DYN}/directions.h5",
    log:
        f"{R}/logs/dynamics/directions.log",
    conda:
        ENV
    threads: 1
    resources:
        **LIGHT,
    params:
        job_config=lambda wc: dynamics_job(config, "directions"),
    script:
        "../scripts/directions.py"


checkpoint dynamics_train:
    input:
        model=MODEL_DIR,
        data=DYN_TRAIN_DATA,
    output:
        directory(f"{DYN}/run"),
    log:
        f"{R}/logs/dynamics/train.log",
    benchmark:
        f"{R}/benchmarks/dynamics/train.tsv"
    conda:
        ENV
    threads: config["engine"]["threads"]
    resources:
        **heavy_resources(),
    params:
        job_config=lambda wc: dynamics_job(config, "train"),
    script:
        "../scripts/dynamics_train.py"


rule dynamics_slice:
    input:
        model=MODEL_DIR,
        data=f"{DYN}/data/{{data}}.h5",
        directions=f"{DYN}/directions.h5",
        run=f"{DYN}/run",
    output:
        f"{DYN}/slices/{{data}}/step-{{step}}/shard-{{k}}-of-{{n}}.h5",
    log:
        f"{R}/logs/dynamics/slices/{{data}}/step-{{step}}/shard-{{k}}-of-{{n}}.log",
    benchmark:
        f"{R}/benchmarks/dynamics/slices/{{data}}/step-{{step}}/shard-{{k}}-of-{{n}}.tsv"
    conda:
        ENV
    threads: config["engine"]["threads"]
    resources:
        **heavy_resources(
            lambda model, data, wc: slice_estimate(
                model, data, dynamics_job(config, "slice"), config["engine"]
            )
        ),
    params:
        job_config=lambda wc: dynamics_job(config, "slice"),
        engine=config["engine"],
    script:
        "../scripts/dynamics_slice.py"


rule dynamics_merge:
    input:
        lambda wc: dynamics_shards(f"{DYN}/slices/{wc.data}/step-{wc.step}"),
    output:
        f"{DYN}/slices/{{data}}/step-{{step}}.h5",
    log:
        f"{R}/logs/dynamics/merge/{{data}}/step-{{step}}.log",
    conda:
        ENV
    threads: 1
    resources:
        **LIGHT,
    script:
        "../scripts/merge.py"


rule dynamics_spectrum:
    input:
        model=MODEL_DIR,
        data=DYN_TRAIN_DATA,
        run=f"{DYN}/run",
    output:
        f"{DYN}/spectra/step-{{step}}.h5",
    log:
        f"{R}/logs/dynamics/spectra/step-{{step}}.log",
    benchmark:
        f"{R}/benchmarks/dynamics/spectra/step-{{step}}.tsv"
    conda:
        ENV
    threads: config["engine"]["threads"]
    resources:
        **heavy_resources(
            lambda model, data, wc: hessian_estimate_at(
                model, data, dynamics_job(config, "spectrum")
            )
        ),
    params:
        job_config=lambda wc: dynamics_job(config, "spectrum"),
    script:
        "../scripts/dynamics_spectrum.py"


rule dynamics_trajectory:
    input:
        model=MODEL_DIR,
        phrase=f"{DYN}/data/phrase.h5",
        corpus=f"{DYN}/data/corpus.h5",
        directions=f"{DYN}/directions.h5",
        run=f"{DYN}/run",
    output:
        trajectory=f"{DYN}/trajectory.h5",
        pca_directions=f"{DYN}/pca-directions.h5",
    log:
        f"{R}/logs/dynamics/trajectory.log",
    benchmark:
        f"{R}/benchmarks/dynamics/trajectory.tsv"
    conda:
        ENV
    threads: config["engine"]["threads"]
    resources:
        **heavy_resources(),
    params:
        job_config=lambda wc: dynamics_job(config, "trajectory"),
        engine=config["engine"],
    script:
        "../scripts/dynamics_trajectory.py"


rule dynamics_pca_slice:
    input:
        model=MODEL_DIR,
        data=DYN_TRAIN_DATA,
        directions=f"{DYN}/pca-directions.h5",
        trajectory=f"{DYN}/trajectory.h5",
        run=f"{DYN}/run",
    output:
        f"{DYN}/pca/shard-{{k}}-of-{{n}}.h5",
    log:
        f"{R}/logs/dynamics/pca/shard-{{k}}-of-{{n}}.log",
    benchmark:
        f"{R}/benchmarks/dynamics/pca/shard-{{k}}-of-{{n}}.tsv"
    conda:
        ENV
    threads: config["engine"]["threads"]
    resources:
        **heavy_resources(
            lambda model, data, wc: slice_estimate(
                model, data, dynamics_job(config, "pca_slice"), config["engine"]
            )
        ),
    params:
        job_config=lambda wc: dynamics_job(config, "pca_slice"),
        engine=config["engine"],
    script:
        "../scripts/dynamics_pca_slice.py"


rule dynamics_pca_merge:
    input:
        dynamics_shards(f"{DYN}/pca"),
    output:
        f"{DYN}/pca.h5",
    log:
        f"{R}/logs/dynamics/merge/pca.log",
    conda:
        ENV
    threads: 1
    resources:
        **LIGHT,
    script:
        "../scripts/merge.py"


rule dynamics_report:
    input:
        unpack(dynamics_report_inputs),
    output:
        **DYN_TABLES,
        **DYN_FIGURES,
    log:
        f"{R}/logs/dynamics/report.log",
    conda:
        ENV
    threads: 1
    resources:
        **LIGHT,
    params:
        clip=config["figures"]["clip"],
    script:
        "../scripts/dynamics_report.py"
