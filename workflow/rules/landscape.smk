rule directions:
    input:
        model=MODEL_DIR,
        data=DATA,
    output:
        f"{R}/directions/{{study}}/{{layer}}-{{direction}}.h5",
    log:
        f"{R}/logs/directions/{{study}}/{{layer}}-{{direction}}.log",
    params:
        spec=spec_of,
    threads: 1
    resources:
        **HEAVY,
    conda:
        ENV
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
    params:
        spec=spec_of,
        engine=config["engine"],
    threads: config["engine"]["threads"]
    resources:
        **HEAVY,
    conda:
        ENV
    script:
        "../scripts/surface.py"


rule merge:
    input:
        shards_of,
    output:
        LANDSCAPE,
    log:
        f"{R}/logs/merge/{{study}}/{{layer}}-{{direction}}.log",
    threads: 1
    resources:
        **LIGHT,
    conda:
        ENV
    script:
        "../scripts/merge.py"
