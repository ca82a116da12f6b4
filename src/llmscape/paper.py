"""The write-up: a Jinja2 + Markdown source in paper/ rendered to one self-contained HTML file.

Every number comes from the results (summary tables, landscape files, model
manifest) through the template context; every static figure is inlined as a data
URI, so the page (results/<model>/paper/index.html) can be mailed around on its own. The interactive
surfaces are linked (relative paths into results/).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import jinja2
import markdown
import pandas as pd

from llmscape import data as datamod
from llmscape.models import read_manifest
from llmscape.provenance import versions

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ max-width: 60rem; margin: 2rem auto; padding: 0 1rem; font-family: Georgia, serif; line-height: 1.5; }}
img {{ max-width: 100%; }}
table {{ border-collapse: collapse; font-size: 0.85em; display: block; overflow-x: auto; }}
th, td {{ border: 1px solid #bbb; padding: 0.2em 0.5em; text-align: right; }}
code {{ font-size: 0.9em; }}
</style></head><body>
{body}
</body></html>
"""


def data_uri(png: str | Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(png).read_bytes()).decode()


def study_context(
    name: str,
    study_config: dict,
    csv: str | Path,
    compare_png: str | Path,
    figures: list[tuple[str, str | Path, str | Path]],
    out_dir: Path,
    curvature_csv: str | Path | None = None,
    curvature_png: str | Path | None = None,
) -> dict:
    """Template variables of one study; ``figures`` holds (title, png, html) per landscape,
    ``curvature_csv`` the model's curvature table and ``curvature_png`` the study's figure
    when the study has curvature."""
    table = pd.read_csv(csv)
    return {
        "curvature": None
        if curvature_png is None
        else {
            "rows": pd.read_csv(curvature_csv).query("study == @name").to_dict("records"),
            "figure": data_uri(curvature_png),
        },
        "name": name,
        "config": study_config,
        "rows": table.to_dict("records"),
        "table_html": table.drop(columns=["targets"]).to_html(
            index=False, float_format=lambda x: f"{x:.4g}", na_rep="–"
        ),
        "compare": data_uri(compare_png),
        "landscapes": [{"title": t, "png": data_uri(p), "html": os.path.relpath(h, out_dir)} for t, p, h in figures],
    }


def _weights_context(csv: str | Path, png: str | Path) -> dict:
    table = pd.read_csv(csv)
    worst = table.loc[table["condition_number"].idxmax()]
    by_matrix = table.groupby("matrix")["condition_number"].median().sort_values()
    return {
        "figure": data_uri(png),
        "n_matrices": len(table),
        "worst": worst.to_dict(),
        "median_condition": by_matrix.to_dict(),
    }


def render(
    template: str | Path,
    out: str | Path,
    config: dict,
    model_dir: str | Path,
    data_path: str | Path,
    studies: list[dict],
    weight_spectra: tuple[str | Path, str | Path] | None,
    dynamics: dict | None = None,
    basins: dict | None = None,
    geometry: dict | None = None,
) -> None:
    """Render ``template`` (Markdown with Jinja2) to a standalone HTML page at ``out``; ``dynamics``:
    the dynamics section's context (llmscape.dynamics.report.paper_context), None without one;
    ``basins``: the Basins section's (llmscape.basins.report.paper_context), None without one."""
    evalset = datamod.load_eval_set(data_path)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(template).parent), undefined=jinja2.StrictUndefined, autoescape=False
    )
    radius = max(config["figures"]["radii"])
    for study in studies:  # the rise at the largest radius, under a name Jinja can sort by ("rise_r0.5" has a dot)
        for row in study["rows"]:
            row["rise"] = row[f"rise_r{radius:g}"]
    context = {
        "config": config,
        "radius": radius,
        "model": read_manifest(model_dir),
        "data": {"texts": evalset.texts, "n_sequences": len(evalset), "n_tokens": int(evalset.n_tokens.sum())},
        "studies": {s["name"]: s for s in studies},
        "weights": _weights_context(*weight_spectra) if weight_spectra else None,
        "dynamics": dynamics,
        "basins": basins,
        "geometry": geometry,  # llmscape.geometry.report.paper_context
        "versions": versions(),
    }
    text = env.get_template(Path(template).name).render(**context)
    body = markdown.markdown(text, extensions=["tables", "fenced_code", "toc"])
    title = text.splitlines()[0].lstrip("# ").strip()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(PAGE.format(title=title, body=body), encoding="utf-8")
