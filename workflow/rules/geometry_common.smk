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
# geometry_theta's outputs (llmscape.geometry.steps.at_theta): the gradient norms and the attention geometry.
GEO_GRADIENTS = {
    "tensors_csv": f"{GEO_TABLES}/gradients.csv",
    "layers_csv": f"{GEO_TABLES}/gradient_layers.csv",
    "gradients_png": f"{GEO_FIGURES}/gradients.png",
    "gradients_pdf": f"{GEO_FIGURES}/gradients.pdf",
}
GEO_ATTENTION_FILES = {
    "attention_h5": f"{GEO}/attention.h5",
    "heads_csv": f"{GEO_TABLES}/heads.csv",
}
# The curves: one file per layer entry of the curves' study, from its spectrum files.
GEO_CURVES = {"curves": [f"{GEO}/curves/{layer}.h5" for layer in GEO_CURVE_LAYERS]}
GEO_CURVE_SPECTRA = [
    f"{R}/spectra/{GEO_SECTION['curves']['study']}/{layer}.h5"
    for layer in GEO_CURVE_LAYERS
]
GEO_THETA = (
    (GEO_GRADIENTS if geometry_enabled(config, "gradients") else {})
    | (GEO_ATTENTION_FILES if geometry_enabled(config, "attention") else {})
    | (GEO_CURVES if GEO_CURVE_LAYERS else {})
)


def geometry_report_inputs(wc):
    inputs = {}
    if geometry_enabled(config, "exact"):
        inputs["exact"] = f"{GEO}/exact/exact.h5"
        inputs["estimate"] = f"{GEO}/exact/estimate.h5"
    if geometry_enabled(config, "curves"):
        inputs["curves"] = GEO_CURVES["curves"]
    if geometry_enabled(config, "attention"):
        inputs["attention"] = GEO_ATTENTION_FILES["attention_h5"]
        inputs["heads"] = GEO_ATTENTION_FILES["heads_csv"]
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
    theta = [p for v in GEO_THETA.values() for p in ([v] if isinstance(v, str) else v)]
    out = list(GEO_REPORT.values()) + theta
    if geometry_enabled(config, "exact"):
        out.append(f"{GEO_TABLES}/exact.csv")
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
        inputs["geometry.gradients_png"] = GEO_GRADIENTS["gradients_png"]
    if geometry_enabled(config, "attention"):
        inputs["geometry.heads_csv"] = GEO_ATTENTION_FILES["heads_csv"]
    return inputs


# What `snakemake --report` shows of the geometry section, each with its caption (workflow/report/).
GEO_REPORTED = {
    "exact_png": "geometry_exact",
    "curves_png": "geometry_curves",
    "curves_csv": "geometry_curves",
    "heads_png": "geometry_attention",
    "sharpness_csv": "geometry_sharpness",
    "gradients_png": "geometry_gradients",
    "tensors_csv": "geometry_gradients",
    "layers_csv": "geometry_gradients",
    "heads_csv": "geometry_attention",
} | {f"attention_{p}_png": "geometry_attention" for p in GEO_ATTENTION}


def geometry_reported(outputs):
    """``outputs`` by name, those in GEO_REPORTED marked for `snakemake --report`."""
    out = dict(outputs)
    for name, caption in GEO_REPORTED.items():
        if name in out:
            out[name] = report(
                out[name], caption=f"../report/{caption}.rst", category="Geometry"
            )
    return out
