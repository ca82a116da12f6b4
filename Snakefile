# llmscape: loss landscapes of large language models.
# `snakemake --cores all` maps every study in config/config.yaml and renders the paper,
# <results>/<model name>/paper/index.html.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/landscape.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/curvature.smk"
include: "workflow/rules/paper.smk"


# Light rules (tokenizing, merging, plotting, rendering) run on the submitting host, not as cluster jobs.
localrules:
    all,
    prepare_data,
    merge,
    plot_landscape,
    compare_study,
    curvature_figure,
    curvature_table,
    paper,


rule all:
    default_target: True
    input:
        all_outputs(),
