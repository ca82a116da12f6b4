rule directions:
    input:
        model=MODEL_DIR,
        data=DATA,
    output:
        f"{R}/directions/{{study}}/{{layer}}-{{direction}}.h5",
    log:
        f"{R}/logs/directions/{{study}}/{{layer}}-{{direction}}.log",
    conda:
        ENV
    threads: 1
    resources:
        **HEAVY,
    params:
        job_config=landscape_config_of,
    script:
        "../scripts/directions.py"


rule surface:
    input:
        model=MODEL_DIR,
        data=DATA,
        directions=rules.directions.output[0],
    output:
        f"{R}/landscapes/{{study}}/{{layer}}-{{direction}}/shard-{{k}}-of-{{n}}.h5",
    log:
        f"{R}/logs/surface/{{study}}/{{layer}}-{{direction}}/shard-{{k}}-of-{{n}}.log",
    conda:
        ENV
    threads: config["engine"]["threads"]
    resources:
        **HEAVY,
    params:
        job_config=landscape_config_of,
        engine=config["engine"],
    script:
        "../scripts/surface.py"


rule merge:
    input:
        shards_of,
    output:
        LANDSCAPE,
    log:
        f"{R}/logs/merge/{{study}}/{{layer}}-{{direction}}.log",
    conda:
        ENV
    threads: 1
    resources:
        **LIGHT,
    script:
        "../scripts/merge.py"
