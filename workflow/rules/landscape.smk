rule directions:
    input:
        unpack(lambda wc: study_direction_extras(wc)),  # worst/checkpoint: probe file, fine-tune run (basins_common.smk)
        model=MODEL_DIR,
        data=DATA,
    output:
        f"{R}/directions/{{study}}/{{layer}}-{{direction}}.h5",
    log:
        f"{R}/logs/directions/{{study}}/{{layer}}-{{direction}}.log",
    benchmark:
        f"{R}/benchmarks/directions/{{study}}/{{layer}}-{{direction}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        **heavy_resources(
            lambda model, data, wc: hessian_estimate(
                model, data, landscape_config_of(wc)
            )
        ),
    params:
        job_config=directions_config_of,
    script:
        "../scripts/directions.py"


rule surface:
    input:
        unpack(lambda wc: study_probe_inputs(wc)),  # the study's capabilities (basins_common.smk)
        model=MODEL_DIR,
        data=DATA,
        directions=rules.directions.output[0],
    output:
        f"{R}/landscapes/{{study}}/{{layer}}-{{direction}}/shard-{{k}}-of-{{n}}.h5",
    log:
        f"{R}/logs/surface/{{study}}/{{layer}}-{{direction}}/shard-{{k}}-of-{{n}}.log",
    benchmark:
        f"{R}/benchmarks/surface/{{study}}/{{layer}}-{{direction}}/shard-{{k}}-of-{{n}}.tsv"
    conda:
        ENV
    threads: config["engine"]["threads"]
    resources:
        **heavy_resources(
            lambda model, data, wc: surface_estimate(
                model, data, landscape_config_of(wc), config["engine"]
            )
        ),
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
