# Paths and lookups of the basin rules (workflow/rules/basins.smk): capability probe sets, fine-tunes,
# basin studies (config sections probes, finetune, basins; src/llmscape/basins/).
from llmscape.basins.plan import (
    basin_config,
    basin_direction_config,
    basin_layers,
    basin_parts,
    direction_finetunes,
    direction_probes,
    engine_section as basin_engine_section,
    finetune_config,
    used_probes,
)
from llmscape.probes import probe_specs

PROBE = f"{R}/probes/{{probe}}.h5"
PROBES_TABLE = f"{R}/tables/probes.csv"
FINETUNE = f"{R}/finetune/{{finetune}}"
BASIN = f"{R}/basins/{{basin}}"
BASIN_TABLES = f"{R}/tables/basins/{{basin}}"
BASIN_FIGURES = f"{R}/figures/basins/{{basin}}"
USED_PROBES = used_probes(config)
PROBE_SPECS = probe_specs(config["probes"])


wildcard_constraints:
    basin="[A-Za-z0-9][A-Za-z0-9_-]*",
    probe="[A-Za-z0-9][A-Za-z0-9_-]*",
    finetune="[A-Za-z0-9][A-Za-z0-9_]*",
    part="[A-Za-z0-9][A-Za-z0-9_-]*",


def probe_paths(names):
    """The tokenized probe files of some probe sets, by name."""
    return {name: PROBE.format(probe=name) for name in names}


def direction_extras(direction):
    """What a worst or checkpoint direction needs beyond the model and data: the probe file of a
    capability objective, the run of a finetune: source."""
    probes = {
        f"probe_{k}": v for k, v in probe_paths(direction_probes(direction)).items()
    }
    runs = {
        f"finetune_{name}": FINETUNE.format(finetune=name)
        for name in direction_finetunes(direction)
    }
    return probes | runs


def named(prefix, inputs):
    """{name: path} of the inputs called <prefix><name> (a script's view of direction_extras)."""
    return {k[len(prefix) :]: v for k, v in inputs.items() if k.startswith(prefix)}


def study_direction_extras(wc):
    """Extra inputs of a landscape's directions job (rule directions)."""
    return direction_extras(config["studies"][wc.study]["directions"][wc.direction])


def study_probe_inputs(wc):
    """The probe files of a landscape study's capabilities (rule surface)."""
    return {
        f"probe_{k}": v
        for k, v in probe_paths(config["studies"][wc.study]["capabilities"]).items()
    }


def basin_searches(basin):
    return [
        f"{R}/basins/{basin}/searches/{layer}-{part}.h5"
        for layer in basin_layers(config, basin)
        for part in basin_parts(config, basin)
    ]


def basin_search_inputs(wc):
    inputs = {"model": MODEL_DIR, "data": DATA}
    inputs |= {
        f"probe_{k}": v
        for k, v in probe_paths(config["basins"][wc.basin]["capabilities"]).items()
    }
    if not wc.part.startswith("random-"):
        inputs["directions"] = (
            f"{R}/basins/{wc.basin}/directions/{wc.layer}-{wc.part}.h5"
        )
    return inputs


def basin_direction_inputs(wc):
    return {"model": MODEL_DIR, "data": DATA} | direction_extras(
        config["basins"][wc.basin]["directions"][wc.direction]
    )


def random_shard(part):
    """(k, n) of a random-<k>-of-<n> part, (0, 1) for another direction."""
    if not part.startswith("random-"):
        return 0, 1
    k, n = part.removeprefix("random-").split("-of-")
    return int(k), int(n)


def capability_figures():
    """The capability figure of every landscape of a study with capabilities."""
    return [
        f"{FIGURE.format(**vars(s))}-capabilities.{ext}"
        for s in landscapes(config)
        if config["studies"][s.study]["capabilities"]
        for ext in ("png", "pdf")
    ]


def basin_outputs():
    """Everything the probes, finetune and basins sections add to `rule all` (common.smk)."""
    out = [PROBES_TABLE] if USED_PROBES else []
    for basin in config["basins"]:
        out += [
            f"{R}/tables/basins/{basin}/{name}.csv" for name in ("radii", "summary")
        ]
        out += [f"{R}/figures/basins/{basin}/basins.{ext}" for ext in ("png", "pdf")]
    return out + capability_figures()


def basin_paper_inputs():
    """The paper's basin inputs (read by llmscape.basins.report.paper_context), keyed _basin.*."""
    if not (USED_PROBES or config["basins"]):
        return {}
    inputs = {"_basin.section": f"{workflow.basedir}/paper/sections/basins.md.j2"}
    if USED_PROBES:
        inputs["_basin.probes"] = PROBES_TABLE
    for basin in config["basins"]:
        inputs[f"_basin.{basin}.summary"] = f"{R}/tables/basins/{basin}/summary.csv"
        inputs[f"_basin.{basin}.radii"] = f"{R}/tables/basins/{basin}/radii.csv"
        inputs[f"_basin.{basin}.figure"] = f"{R}/figures/basins/{basin}/basins.png"
        # the explorer's curves (llmscape.steps.render_paper)
        inputs[f"_basin.{basin}.searches"] = basin_searches(basin)
    for s in landscapes(config):
        if config["studies"][s.study]["capabilities"]:
            key = f"_basin.capabilities.{s.study}.{s.layer}-{s.direction}"
            inputs[key] = f"{FIGURE.format(**vars(s))}-capabilities.png"
    return inputs
