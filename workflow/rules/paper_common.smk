# Paths and lookups of the write-up's rules (workflow/rules/paper.smk): the claims table, the paper,
# its explorer and provenance pages (src/llmscape/claims.py, paper.py, explorer.py).
CLAIMS = f"{R}/tables/claims.csv"
EXPLORER = f"{R}/paper/explorer.html"
PROVENANCE = f"{R}/paper/provenance.html"


def claims_inputs(wc):
    """The inputs of the claims table (read by llmscape.claims.evaluate, by these names): each landscape study's
    summary table, landscapes and directions files, the curvature table, each basin study's tables,
    the dynamics study's steps and roughness tables, and the model (its number of layers).
    """
    inputs = {"model": MODEL_DIR}
    if curvature_studies(config):
        inputs["curvature_table"] = f"{R}/tables/curvature.csv"
    for study in config["studies"]:
        specs = [vars(s) for s in landscapes(config, study)]
        inputs |= {
            f"{study}.table": f"{R}/tables/{study}/summary.csv",
            f"{study}.landscapes": [LANDSCAPE.format(**s) for s in specs],
            f"{study}.directions": [
                f"{R}/directions/{s['study']}/{s['layer']}-{s['direction']}.h5"
                for s in specs
            ],
        }
    for basin in config["basins"]:
        inputs[f"_basin.{basin}.summary"] = f"{R}/tables/basins/{basin}/summary.csv"
        inputs[f"_basin.{basin}.radii"] = f"{R}/tables/basins/{basin}/radii.csv"
    if dynamics_enabled(config):
        inputs["dynamics.steps"] = DYN_TABLES["steps"]
        inputs["dynamics.roughness"] = DYN_TABLES["roughness"]
    return inputs
