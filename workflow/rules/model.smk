rule prepare_model:
    output:
        directory(MODEL_DIR),
    log:
        f"{R}/logs/prepare_model.log",
    params:
        model=config["model"],
    threads: 2
    resources:
        **HEAVY,
    conda:
        ENV
    script:
        "../scripts/prepare_model.py"


rule prepare_data:
    input:
        model=MODEL_DIR,
    output:
        DATA,
    log:
        f"{R}/logs/prepare_data.log",
    params:
        data=config["data"],
    threads: 1
    resources:
        **LIGHT,
    conda:
        ENV
    script:
        "../scripts/prepare_data.py"
