# Paths and config lookups shared by the rules. Everything a model produces lives
# under results/<model name>/, so several model configs can share one results/.
import errno
import os

from llmscape.study import (
    LandscapeSpec,
    curvature_config,
    curvature_studies,
    directions_config,
    landscape_config,
    landscapes,
    layer_tokens,
)
from llmscape.models import source_files
from llmscape.steps import hessian_estimate, surface_estimate

R = f"{config['results']}/{config['model']['name']}"
MODEL_DIR = f"{R}/model"
DATA = f"{R}/data/{config['data']['name']}.h5"
LANDSCAPE = f"{R}/landscapes/{{study}}/{{layer}}-{{direction}}.h5"
FIGURE = f"{R}/figures/{{study}}/{{layer}}-{{direction}}"
PAPER = f"{R}/paper/index.html"
ENV = "../../envs/llmscape.yaml"
HEAVY = config["resources"]
# Memory of a job with no estimate of its own (model preparation, weight spectra).
DEFAULT_MEM_MB = 4000
LIGHT = {"mem_mb": 2000, "runtime": 10}


wildcard_constraints:
    study="[A-Za-z0-9][A-Za-z0-9_-]*",
    layer="first|middle|last|all|m?[0-9]+",
    direction="[A-Za-z0-9][A-Za-z0-9_]*",
    k="[0-9]+",
    n="[0-9]+",


def heavy_resources(estimate=None):
    """A heavy job's resources: the config's, with mem_mb from the job's cost estimate
    (llmscape.steps.*_estimate(model, data, job_config)) when the config leaves it null.
    """
    if HEAVY["mem_mb"] is not None:
        return {**HEAVY}
    if estimate is None:
        return {**HEAVY, "mem_mb": DEFAULT_MEM_MB}

    def mem_mb(wc, input):
        for path in (input.model, input.data):
            if not os.path.exists(
                path
            ):  # not made yet: Snakemake shows <TBD> and asks again later
                raise FileNotFoundError(errno.ENOENT, "not made yet", path)
        return estimate(str(input.model), str(input.data), wc).mem_mb

    return {**HEAVY, "mem_mb": mem_mb}


def landscape_config_of(wc):
    return landscape_config(config, LandscapeSpec(wc.study, wc.layer, wc.direction))


def directions_config_of(wc):
    return directions_config(config, LandscapeSpec(wc.study, wc.layer, wc.direction))


def shards_of(wc):
    n = config["studies"][wc.study]["shards"]
    return [
        f"{R}/landscapes/{wc.study}/{wc.layer}-{wc.direction}/shard-{k}-of-{n}.h5"
        for k in range(n)
    ]


def study_landscapes(wc):
    return [LANDSCAPE.format(**vars(s)) for s in landscapes(config, wc.study)]


def curvature_outputs():
    """The model's curvature table and each curvature study's figure (none without curvature)."""
    studies = curvature_studies(config)
    table = [f"{R}/tables/curvature.csv"] if studies else []
    return table + [f"{R}/figures/{study}/curvature.png" for study in studies]


def all_outputs():
    per_landscape = [
        f"{FIGURE.format(**vars(s))}.{ext}"
        for s in landscapes(config)
        for ext in ("png", "pdf", "html")
    ]
    per_study = [
        f"{R}/{kind}/{study}/{name}"
        for study in config["studies"]
        for kind, name in [
            ("figures", "compare.png"),
            ("figures", "compare.pdf"),
            ("tables", "summary.csv"),
        ]
    ]
    curvature = curvature_outputs() + [
        f"{R}/figures/{study}/curvature.pdf" for study in curvature_studies(config)
    ]
    weights = (
        [f"{R}/figures/weight_spectra.png", f"{R}/tables/weight_spectra.csv"]
        if config["weight_spectra"]["enabled"]
        else []
    )
    dynamics = dynamics_outputs()  # workflow/rules/dynamics.smk
    basins = basin_outputs()  # workflow/rules/basins_common.smk
    geometry = geometry_outputs()  # workflow/rules/geometry_common.smk
    return (
        per_landscape
        + per_study
        + curvature
        + weights
        + dynamics
        + basins
        + geometry
        + [PAPER]
    )


def paper_inputs(wc):
    """The paper's inputs by name: the model's files, then `<study>.<kind>` per study
    (llmscape.steps.render_paper reads them by these names)."""
    inputs = {
        "template": f"{workflow.basedir}/paper/paper.md.j2",
        "model": MODEL_DIR,
        "data": DATA,
        "claims": CLAIMS,  # workflow/rules/paper_common.smk
    }
    if config["weight_spectra"]["enabled"]:
        inputs["weights_csv"] = f"{R}/tables/weight_spectra.csv"
        inputs["weights_png"] = f"{R}/figures/weight_spectra.png"
    if curvature_studies(config):
        inputs["curvature_table"] = f"{R}/tables/curvature.csv"
    for study in config["studies"]:
        specs = [vars(s) for s in landscapes(config, study)]
        inputs |= {
            f"{study}.table": f"{R}/tables/{study}/summary.csv",
            f"{study}.compare": f"{R}/figures/{study}/compare.png",
            f"{study}.landscapes": [LANDSCAPE.format(**s) for s in specs],
            f"{study}.pngs": [f"{FIGURE.format(**s)}.png" for s in specs],
            f"{study}.htmls": [f"{FIGURE.format(**s)}.html" for s in specs],
        }
        if study in curvature_studies(config):
            inputs[f"{study}.curvature"] = f"{R}/figures/{study}/curvature.png"
    # The dynamics study (workflow/rules/dynamics.smk), read by llmscape.dynamics.report.paper_context.
    if dynamics_enabled(config):
        inputs["dynamics.section"] = f"{workflow.basedir}/paper/sections/dynamics.md.j2"
        inputs["dynamics.trajectory"] = f"{DYN}/trajectory.h5"
        inputs |= {f"dynamics.{k}": v for k, v in {**DYN_TABLES, **DYN_FIGURES}.items()}
    # The Basins section (workflow/rules/basins_common.smk), read by llmscape.basins.report.paper_context.
    inputs |= basin_paper_inputs()
    # The geometry section (workflow/rules/geometry_common.smk), read by llmscape.geometry.report.paper_context.
    inputs |= geometry_paper_inputs()
    return inputs
