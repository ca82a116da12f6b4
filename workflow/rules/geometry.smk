# Seed 002 in full (src/llmscape/geometry/, config section `geometry`): the estimators against the
# exact spectrum of a tiny trained Llama, the loss along extreme-curvature directions (vectors from
# a study's spectrum jobs), gradient norms at theta*, attention geometry, sharp/flat/saddle labels.


include: "geometry_common.smk"


rule geometry_exact:
    input:
        data=DATA,
    output:
        run=directory(f"{GEO}/exact/run"),
        exact=f"{GEO}/exact/exact.h5",
        estimate=f"{GEO}/exact/estimate.h5",
        csv=report(
            f"{GEO_TABLES}/exact.csv",
            caption="../report/geometry_exact.rst",
            category="Geometry",
        ),
    log:
        f"{R}/logs/geometry/exact.log",
    benchmark:
        f"{R}/benchmarks/geometry/exact.tsv"
    conda:
        ENV
    threads: 1
    resources:
        **heavy_resources(),
    params:
        section=GEO_SECTION,
    script:
        "../scripts/geometry_exact.py"


rule geometry_theta:
    input:
        model=MODEL_DIR,
        data=DATA,
        spectra=GEO_CURVE_SPECTRA,
    output:
        **geometry_reported(GEO_THETA),
    log:
        f"{R}/logs/geometry/theta.log",
    benchmark:
        f"{R}/benchmarks/geometry/theta.tsv"
    conda:
        ENV
    threads: config["engine"]["threads"]
    resources:
        **heavy_resources(),
    params:
        section=GEO_SECTION,
        model=config["model"],
        engine=config["engine"],
    script:
        "../scripts/geometry_theta.py"


rule geometry_report:
    input:
        unpack(geometry_report_inputs),
    output:
        **geometry_reported(GEO_REPORT),
    log:
        f"{R}/logs/geometry/report.log",
    localrule: True
    conda:
        ENV
    threads: 1
    resources:
        **LIGHT,
    params:
        section=GEO_SECTION,
    script:
        "../scripts/geometry_report.py"
