rule paper:
    input:
        template=f"{workflow.basedir}/paper/paper.md.j2",
        model=MODEL_DIR,
        data=DATA,
        tables=expand(f"{R}/tables/{{study}}/summary.csv", study=config["studies"]),
        compare=expand(f"{R}/figures/{{study}}/compare.png", study=config["studies"]),
        landscapes=[LANDSCAPE.format(**vars(s)) for s in landscapes(config)],
        pngs=[f"{FIGURE.format(**vars(s))}.png" for s in landscapes(config)],
        htmls=[f"{FIGURE.format(**vars(s))}.html" for s in landscapes(config)],
        curvature=curvature_outputs(),
        weights_csv=f"{R}/tables/weight_spectra.csv",
        weights_png=f"{R}/figures/weight_spectra.png",
    output:
        "paper/build/index.html",
    log:
        f"{R}/logs/paper.log",
    conda:
        ENV
    threads: 1
    resources:
        **LIGHT,
    params:
        config=config,
        studies=[s.study for s in landscapes(config)],
        curvature_studies=curvature_studies(config),
    script:
        "../scripts/paper.py"
