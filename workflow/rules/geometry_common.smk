# Paths and lookups of the geometry rules (workflow/rules/geometry.smk; config section `geometry`,
# src/llmscape/geometry/).
from llmscape.study import layer_token
from llmscape.geometry.settings import (
    curve_layers,
    enabled as geometry_enabled,
)

GEO = f"{R}/geometry"
GEO_TABLES = f"{R}/tables/geometry"
GEO_FIGURES = f"{R}/figures/geometry"
GEO_SECTION = config["geometry"]
GEO_CURVE_LAYERS = curve_layers(config) if geometry_enabled(config, "curves") else []
# The attention figures are named by the layer positions as configured (first, middle, last, m1, ...).
GEO_ATTENTION = [layer_token(p) for p in GEO_SECTION["attention"]["layers"]]


def geometry_report_outputs():
    """The report job's figures and tables by name (llmscape.geometry.report.write_report)."""
    out = {}
    figures = []
    if geometry_enabled(config, "exact"):
        figures.append("exact")
    if geometry_enabled(config, "curves"):
        figures.append("curves")
        out["curves_html"] = f"{GEO_FIGURES}/curves.html"
        out["curves_csv"] = f"{GEO_TABLES}/curves.csv"
    if geometry_enabled(config, "attention"):
        figures.append("heads")
        out["attention_html"] = f"{GEO_FIGURES}/attention.html"
        out |= {
            f"attention_{p}_{ext}": f"{GEO_FIGURES}/attention-{p}.{ext}"
            for p in GEO_ATTENTION
            for ext in ("png", "pdf")
        }
    for name in figures:
        out |= {
            f"{name}_{ext}": f"{GEO_FIGURES}/{name}.{ext}" for ext in ("png", "pdf")
        }
    if curvature_studies(config):
        out["sharpness_csv"] = f"{GEO_TABLES}/sharpness.csv"
    return out


GEO_REPORT = geometry_report_outputs() if geometry_enabled(config) else {}
GEO_GRADIENTS = {
    "tensors_csv": f"{GEO_TABLES}/gradients.csv",
    "layers_csv": f"{GEO_TABLES}/gradient_layers.csv",
    "png": f"{GEO_FIGURES}/gradients.png",
    "pdf": f"{GEO_FIGURES}/gradients.pdf",
}


def geometry_report_inputs(wc):
    inputs = {}
    if geometry_enabled(config, "exact"):
        inputs["exact"] = f"{GEO}/exact/exact.h5"
        inputs["estimate"] = f"{GEO}/exact/estimate.h5"
    if geometry_enabled(config, "curves"):
        inputs["curves"] = [f"{GEO}/curves/{layer}.h5" for layer in GEO_CURVE_LAYERS]
    if geometry_enabled(config, "attention"):
        inputs["attention"] = f"{GEO}/attention.h5"
        inputs["heads"] = f"{GEO_TABLES}/heads.csv"
    inputs["spectra"] = [
        f"{R}/spectra/{study}/{layer}.h5"
        for study in curvature_studies(config)
        for layer in layer_tokens(config, study)
    ]
    if dynamics_enabled(config) and DYN_SECTION["curvature"]["enabled"]:
        inputs["dynamics_spectra"] = [
            f"{DYN}/spectra/step-{s}.h5" for s in dynamics_saved()
        ]
    return inputs


def geometry_outputs():
    """Everything the geometry section makes (none when it is not enabled)."""
    if not geometry_enabled(config):
        return []
    out = list(GEO_REPORT.values())
    if geometry_enabled(config, "exact"):
        out.append(f"{GEO_TABLES}/exact.csv")
    if geometry_enabled(config, "gradients"):
        out += list(GEO_GRADIENTS.values())
    if geometry_enabled(config, "attention"):
        out.append(f"{GEO_TABLES}/heads.csv")
    return out


def geometry_paper_inputs():
    """The paper's `geometry.*` inputs (llmscape.geometry.report.paper_context reads them by these names)."""
    if not geometry_enabled(config):
        return {}
    inputs = {"geometry.section": f"{workflow.basedir}/paper/sections/geometry.md.j2"}
    inputs |= {f"geometry.{k}": v for k, v in GEO_REPORT.items()}
    if geometry_enabled(config, "exact"):
        inputs["geometry.exact"] = f"{GEO}/exact/exact.h5"
        inputs["geometry.exact_csv"] = f"{GEO_TABLES}/exact.csv"
    if geometry_enabled(config, "gradients"):
        inputs["geometry.gradients_csv"] = GEO_GRADIENTS["tensors_csv"]
        inputs["geometry.gradient_layers_csv"] = GEO_GRADIENTS["layers_csv"]
        inputs["geometry.gradients_png"] = GEO_GRADIENTS["png"]
    if geometry_enabled(config, "attention"):
        inputs["geometry.heads_csv"] = f"{GEO_TABLES}/heads.csv"
    return inputs
