rule prepare_model:
    input:
        source_files(config["model"]["source"]),
    output:
        directory(MODEL_DIR),
    log:
        f"{R}/logs/prepare_model.log",
    benchmark:
        f"{R}/benchmarks/prepare_model.tsv"
    conda:
        ENV
    threads: 2
    resources:
        **heavy_resources(),
    params:
        model=config["model"],
    script:
        "../scripts/prepare_model.py"


rule prepare_data:
    input:
        model=MODEL_DIR,
        texts=config["data"]["files"] if config["data"]["kind"] == "files" else [],
    output:
        DATA,
    log:
        f"{R}/logs/prepare_data.log",
    conda:
        ENV
    threads: 1
    resources:
        **LIGHT,
    params:
        data=config["data"],
    script:
        "../scripts/prepare_data.py"
