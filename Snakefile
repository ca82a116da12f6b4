# llmscape: loss landscapes of large language models.
# `snakemake --cores all` maps every study in config/config.yaml and renders the paper,
# <results>/<model name>/paper/index.html.
import sys

from snakemake.utils import min_version, validate

from llmscape.config import before_defaults, check, in_schema_order
from llmscape.errors import LlmscapeError
from llmscape.jobs import failures

min_version("9.0")


# The default study, unless the command names its own config (--configfile): a user's
# config replaces it rather than being merged into it.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


# Everything the config alone decides is checked here, before any job, in words naming the key.
try:
    for warning in before_defaults(
        config, f"{workflow.basedir}/workflow/schemas/config.schema.yaml"
    ):
        logger.warning(f"llmscape: {warning}")
    validate(config, "workflow/schemas/config.schema.yaml")
    check(config)
    # one key order for the same settings, so that reordering a YAML file reruns nothing
    in_schema_order(config, f"{workflow.basedir}/workflow/schemas/config.schema.yaml")
except LlmscapeError as exc:
    sys.exit(f"llmscape: {exc}")


include: "workflow/rules/common.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/landscape.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/curvature.smk"
include: "workflow/rules/dynamics.smk"
include: "workflow/rules/basins.smk"
include: "workflow/rules/geometry.smk"
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


# After a failure, the last lines say which job failed and why (not only Snakemake's generic sentence).
onerror:
    for line in failures(log):
        print(line, file=sys.stderr)
    sys.exit(1)
