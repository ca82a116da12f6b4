# Basins (src/llmscape/basins/, config sections probes, finetune, basins; issue #9): capability probe
# sets scored at theta*, short fine-tunes, worst-case and checkpoint directions, and per basin study and
# layer entry the radii along its random directions (in shards) and its other directions; then tables,
# a figure and the paper's Basins section. Landscape studies with capabilities get a capability figure.


include: "basins_common.smk"


rule prepare_probes:
    input:
        model=MODEL_DIR,
        sets=[str(PROBE_SPECS[name].path) for name in USED_PROBES],
    output:
        probes=[PROBE.format(probe=name) for name in USED_PROBES],
        table=report(
            PROBES_TABLE,
            caption="../report/probes.rst",
            category="Basins",
        ),
    log:
        f"{R}/logs/probes.log",
    benchmark:
        f"{R}/benchmarks/probes.tsv"
    conda:
        ENV
    threads: 1
    resources:
        **heavy_resources(),
    params:
        probes=config["probes"],
        names=USED_PROBES,
    script:
        "../scripts/basins_probes.py"


rule finetune:
    input:
        model=MODEL_DIR,
        data=lambda wc: [
            str(PROBE_SPECS[name].path)
            for name in used_probes(
                {"finetune": {wc.finetune: config["finetune"][wc.finetune]}}
            )
        ],
    output:
        directory(FINETUNE),
    log:
        f"{R}/logs/finetune/{{finetune}}.log",
    benchmark:
        f"{R}/benchmarks/finetune/{{finetune}}.tsv"
    conda:
        ENV
    threads: config["engine"]["threads"]
    resources:
        **heavy_resources(),
    params:
        job_config=lambda wc: finetune_config(config, wc.finetune),
        probes=config["probes"],
    script:
        "../scripts/basins_finetune.py"


rule basin_direction:
    input:
        unpack(basin_direction_inputs),
    output:
        f"{BASIN}/directions/{{layer}}-{{direction}}.h5",
    log:
        f"{R}/logs/basins/{{basin}}/directions/{{layer}}-{{direction}}.log",
    benchmark:
        f"{R}/benchmarks/basins/{{basin}}/directions/{{layer}}-{{direction}}.tsv"
    conda:
        ENV
    threads: config["engine"]["threads"]
    resources:
        **heavy_resources(),
    params:
        job_config=lambda wc: basin_direction_config(
            config, wc.basin, wc.layer, wc.direction
        ),
    script:
        "../scripts/directions.py"


rule basin_search:
    input:
        unpack(basin_search_inputs),
    output:
        f"{BASIN}/searches/{{layer}}-{{part}}.h5",
    log:
        f"{R}/logs/basins/{{basin}}/searches/{{layer}}-{{part}}.log",
    benchmark:
        f"{R}/benchmarks/basins/{{basin}}/searches/{{layer}}-{{part}}.tsv"
    conda:
        ENV
    threads: config["engine"]["threads"]
    resources:
        **heavy_resources(),
    params:
        job_config=lambda wc: basin_config(config, wc.basin, wc.layer, wc.part),
        engine=lambda wc: basin_engine_section(config, wc.basin),
        shard=lambda wc: random_shard(wc.part),
    script:
        "../scripts/basins_search.py"


rule basin_report:
    input:
        lambda wc: basin_searches(wc.basin),
    output:
        radii=report(
            f"{BASIN_TABLES}/radii.csv",
            caption="../report/basins_radii.rst",
            category="Basins",
        ),
        summary=report(
            f"{BASIN_TABLES}/summary.csv",
            caption="../report/basins.rst",
            category="Basins",
        ),
        png=report(
            f"{BASIN_FIGURES}/basins.png",
            caption="../report/basins.rst",
            category="Basins",
        ),
        pdf=f"{BASIN_FIGURES}/basins.pdf",
    log:
        f"{R}/logs/basins/{{basin}}/report.log",
    localrule: True
    conda:
        ENV
    threads: 1
    resources:
        **LIGHT,
    params:
        job_config=lambda wc: basin_config(
            config, wc.basin, basin_layers(config, wc.basin)[0]
        ),
    script:
        "../scripts/basins_report.py"


rule plot_capabilities:
    input:
        LANDSCAPE,
    output:
        png=report(
            f"{FIGURE}-capabilities.png",
            caption="../report/capabilities.rst",
            category="Basins",
        ),
        pdf=f"{FIGURE}-capabilities.pdf",
    log:
        f"{R}/logs/figures/{{study}}/{{layer}}-{{direction}}-capabilities.log",
    localrule: True
    conda:
        ENV
    threads: 1
    resources:
        **LIGHT,
    script:
        "../scripts/basins_capabilities.py"
