# Training dynamics (src/llmscape/dynamics/, config section `dynamics`): a short training run,
# re-centred slices at its saved steps (phrase and corpus), curvature along training and the
# trajectory's PCA plane. The run is a checkpoint: the slices follow the steps it saved
# (a diverged run stops early and keeps fewer).


include: "dynamics_common.smk"


rule dynamics_data:
    input:
        model=MODEL_DIR,
        corpus=CORPUS,
    output:
        phrase=f"{DYN}/data/phrase.h5",
        corpus=f"{DYN}/data/corpus.h5",
    log:
        f"{R}/logs/dynamics/data.log",
    localrule: True
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
    localrule: True
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
        f"{DYN}/{DYN_SLICE_JOB}.h5",
    log:
        f"{R}/logs/dynamics/{DYN_SLICE_JOB}.log",
    benchmark:
        f"{R}/benchmarks/dynamics/{DYN_SLICE_JOB}.tsv"
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
        shard=dynamics_shard,
        n_shards=DYN_SHARDS,
    script:
        "../scripts/dynamics_slice.py"


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
        f"{DYN}/{DYN_PCA_JOB}.h5",
    log:
        f"{R}/logs/dynamics/{DYN_PCA_JOB}.log",
    benchmark:
        f"{R}/benchmarks/dynamics/{DYN_PCA_JOB}.tsv"
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
        shard=dynamics_shard,
        n_shards=DYN_SHARDS,
    script:
        "../scripts/dynamics_pca_slice.py"


rule dynamics_report:
    input:
        unpack(dynamics_report_inputs),
    output:
        **dynamics_report_outputs(),
    log:
        f"{R}/logs/dynamics/report.log",
    localrule: True
    conda:
        ENV
    threads: 1
    resources:
        **LIGHT,
    params:
        clip=config["figures"]["clip"],
    script:
        "../scripts/dynamics_report.py"


if DYN_SHARDS > 1:

    rule dynamics_merge:
        input:
            lambda wc: dynamics_shards(f"{DYN}/slices/{wc.data}/step-{wc.step}"),
        output:
            f"{DYN}/slices/{{data}}/step-{{step}}.h5",
        log:
            f"{R}/logs/dynamics/merge/{{data}}/step-{{step}}.log",
        localrule: True
        conda:
            ENV
        threads: 1
        resources:
            **LIGHT,
        script:
            "../scripts/merge.py"

    rule dynamics_pca_merge:
        input:
            dynamics_shards(f"{DYN}/pca"),
        output:
            f"{DYN}/pca.h5",
        log:
            f"{R}/logs/dynamics/merge/pca.log",
        localrule: True
        conda:
            ENV
        threads: 1
        resources:
            **LIGHT,
        script:
            "../scripts/merge.py"
