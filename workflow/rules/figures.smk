rule plot_landscape:
    input:
        LANDSCAPE,
    output:
        png=report(
            f"{FIGURE}.png",
            caption="../report/landscape.rst",
            category="Landscapes",
            subcategory="{study}",
        ),
        pdf=f"{FIGURE}.pdf",
        html=f"{FIGURE}.html",
    log:
        f"{R}/logs/figures/{{study}}/{{layer}}-{{direction}}.log",
    conda:
        ENV
    threads: 1
    resources:
        **LIGHT,
    params:
        clip=config["figures"]["clip"],
    script:
        "../scripts/plot_landscape.py"


rule compare_study:
    input:
        study_landscapes,
    output:
        png=report(
            f"{R}/figures/{{study}}/compare.png",
            caption="../report/compare.rst",
            category="Comparisons",
        ),
        pdf=f"{R}/figures/{{study}}/compare.pdf",
        csv=report(
            f"{R}/tables/{{study}}/summary.csv",
            caption="../report/summary.rst",
            category="Tables",
        ),
    log:
        f"{R}/logs/figures/{{study}}/compare.log",
    conda:
        ENV
    threads: 1
    resources:
        **LIGHT,
    params:
        clip=config["figures"]["clip"],
        radii=config["figures"]["radii"],
        shared_scale=config["figures"]["shared_scale"],
    script:
        "../scripts/compare_study.py"
