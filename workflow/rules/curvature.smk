rule spectrum:
    input:
        model=MODEL_DIR,
        data=DATA,
    output:
        f"{R}/spectra/{{study}}/{{layer}}.h5",
    log:
        f"{R}/logs/spectra/{{study}}/{{layer}}.log",
    benchmark:
        f"{R}/benchmarks/spectra/{{study}}/{{layer}}.tsv"
    conda:
        ENV
    threads: config["engine"]["threads"]
    resources:
        **heavy_resources(
            lambda model, data, wc: hessian_estimate(
                model, data, curvature_config(config, wc.study, wc.layer)
            )
        ),
    params:
        job_config=lambda wc: curvature_config(config, wc.study, wc.layer),
    script:
        "../scripts/spectrum.py"


rule curvature_figure:
    input:
        lambda wc: expand(
            f"{R}/spectra/{wc.study}/{{layer}}.h5",
            layer=layer_tokens(config, wc.study),
        ),
    output:
        png=report(
            f"{R}/figures/{{study}}/curvature.png",
            caption="../report/curvature.rst",
            category="Curvature",
        ),
        pdf=f"{R}/figures/{{study}}/curvature.pdf",
    log:
        f"{R}/logs/figures/{{study}}/curvature.log",
    conda:
        ENV
    threads: 1
    resources:
        **LIGHT,
    script:
        "../scripts/curvature_figure.py"


rule curvature_table:
    input:
        [
            f"{R}/spectra/{study}/{layer}.h5"
            for study in curvature_studies(config)
            for layer in layer_tokens(config, study)
        ],
    output:
        report(
            f"{R}/tables/curvature.csv",
            caption="../report/curvature_table.rst",
            category="Tables",
        ),
    log:
        f"{R}/logs/curvature_table.log",
    conda:
        ENV
    threads: 1
    resources:
        **LIGHT,
    script:
        "../scripts/curvature_table.py"


rule weight_spectra:
    input:
        MODEL_DIR,
    output:
        png=report(
            f"{R}/figures/weight_spectra.png",
            caption="../report/weight_spectra.rst",
            category="Curvature",
        ),
        pdf=f"{R}/figures/weight_spectra.pdf",
        csv=report(
            f"{R}/tables/weight_spectra.csv",
            caption="../report/weight_spectra.rst",
            category="Tables",
        ),
    log:
        f"{R}/logs/weight_spectra.log",
    conda:
        ENV
    threads: 1
    resources:
        **heavy_resources(),
    script:
        "../scripts/weight_spectra.py"
