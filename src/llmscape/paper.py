"""The write-up: a Jinja2 + Markdown source in paper/ rendered to one self-contained HTML file.

Every number comes from the results (summary tables, the claims table, landscape files, model
manifest) through the template context; every static figure is inlined as a data
URI, so the page (results/<model>/paper/index.html) can be mailed around on its own. The interactive
surfaces are linked (relative paths into results/), and so are the explorer (``explorer.html``,
llmscape.explorer) and the provenance page (``provenance.html``).

index.html holds nothing that depends on when or how fast the run went: two clean runs of one config
give the same bytes. Wall times are the one time-dependent part of the write-up, and live only in
``provenance.html`` (``provenance_page``): read from Snakemake's benchmark files
(``benchmarks/**/*.tsv``, every heavy job that ran before the paper) and from the landscape files'
``wall_time_s``.
"""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path

import jinja2
import markdown
import pandas as pd

from llmscape import data as datamod
from llmscape.models import read_manifest
from llmscape.provenance import versions
from llmscape.store import Landscape

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ max-width: 60rem; margin: 2rem auto; padding: 0 1rem; font-family: Georgia, serif; line-height: 1.5; }}
img {{ max-width: 100%; }}
table {{ border-collapse: collapse; font-size: 0.85em; display: block; overflow-x: auto; }}
th, td {{ border: 1px solid #bbb; padding: 0.2em 0.5em; text-align: right; }}
code {{ font-size: 0.9em; }}
pre {{ overflow-x: auto; background: #f6f6f6; padding: 0.5em; font-size: 0.8em; }}
table.claims td, table.claims th {{ text-align: left; vertical-align: top; }}
td.holds {{ background: #e3f4e1; }}
td.fails {{ background: #f9e0de; }}
td.inconclusive {{ background: #f3f0dc; }}
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
        # wall times are time-dependent: they are on the provenance page, not here
        "table_html": table.drop(columns=["targets", "wall_time_s"], errors="ignore").to_html(
            index=False, float_format=lambda x: f"{x:.4g}", na_rep="–"
        ),
        "compare": data_uri(compare_png),
        "landscapes": [
            {
                "title": t,
                "png": data_uri(p),
                "html": os.path.relpath(h, out_dir),
                "explorer": explorer_link(name, *Path(h).stem.split("-", 1)),
            }
            for t, p, h in figures
        ],
    }


def explorer_link(study: str, layer: str, direction: str, metric: str = "loss") -> str:
    """The explorer's address showing one landscape (llmscape.explorer reads the view from the hash)."""
    return f"explorer.html#study={study}&layer={layer}&direction={direction}&metric={metric}&view=surface"


VERDICT_CLASS = {"holds": "holds", "does not hold": "fails", "inconclusive": "inconclusive"}


def claims_html(table: pd.DataFrame) -> str:
    """The claims table as HTML (its cells hold '|', which Markdown tables cannot): claim, source,
    measure, value(s), verdict and the rule that decided it, one row per claim."""
    rows = []
    for r in table.to_dict("records"):
        cells = [
            f"<td>{html.escape(str(r['claim']))}</td>",
            f"<td>{html.escape(str(r['source']))}</td>",
            f"<td>{html.escape(str(r['measure']))}</td>",
            f"<td>{html.escape(str(r['values']))}</td>",
            f'<td class="verdict {VERDICT_CLASS[r["verdict"]]}"><strong>{r["verdict"]}</strong><br>'
            f"<small>{html.escape(str(r['why']))}</small></td>",
            f"<td><small>{html.escape(str(r['rule']))}</small></td>",
        ]
        rows.append(f'<tr id="claim-{r["id"]}">' + "".join(cells) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("claim", "source", "measure", "value(s) in this run", "verdict", "rule"))
    return f'<table class="claims">\n<thead><tr>{head}</tr></thead>\n<tbody>\n' + "\n".join(rows) + "\n</tbody></table>"


def provenance_context(config: dict, manifest: dict, landscapes: list[Landscape]) -> dict:
    """The provenance appendix (nothing time-dependent): package versions and identities read from the
    landscape files, the config as run, the model's manifest."""
    import yaml

    found: dict[str, set] = {}
    for ls in landscapes:
        for package, version in ls.attrs["provenance"].get("versions", {}).items():
            found.setdefault(package, set()).add(version)
    return {
        "versions": {k: ", ".join(sorted(v)) for k, v in sorted(found.items())},
        "config_yaml": yaml.safe_dump(config, sort_keys=False, allow_unicode=True),
        "identities": [
            {
                "study": ls.attrs["provenance"]["config"]["study"],
                "layer": ls.attrs["provenance"]["directions_recipe"]["layer"],
                "direction": ls.attrs["provenance"]["directions_recipe"]["name"],
                "identity": ls.attrs["identity"],
                "directions_sha256": ls.attrs["provenance"]["directions_sha256"],
            }
            for ls in landscapes
        ],
        "manifest": manifest,
    }


def wall_times(results_dir: str | Path) -> list[dict]:
    """Every benchmark file's job (path under benchmarks/, without .tsv), wall seconds and peak RSS (MB)."""
    root = Path(results_dir) / "benchmarks"
    rows = []
    for tsv in sorted(root.rglob("*.tsv")):
        table = pd.read_csv(tsv, sep="\t")
        if len(table):
            last = table.iloc[-1]
            rows.append({"job": str(tsv.relative_to(root).with_suffix("")), "s": float(last["s"]),
                         "max_rss": float(last.get("max_rss", float("nan")))})  # fmt: skip
    return rows


def provenance_page(results_dir: str | Path, landscapes: list[tuple[str, Landscape]], out: str | Path) -> None:
    """provenance.html: the wall time of each job (benchmark files) and of each landscape (its files'
    ``wall_time_s``, summed over shards): the one part of the write-up that changes from run to run."""
    jobs = wall_times(results_dir)
    total = sum(j["s"] for j in jobs)
    rows = "\n".join(
        f"<tr><td><code>{html.escape(j['job'])}</code></td><td>{j['s']:.1f}</td><td>{j['max_rss']:.0f}</td></tr>"
        for j in jobs
    )
    ls_rows = "\n".join(
        f"<tr><td>{html.escape(title)}</td><td>{float(ls.attrs.get('wall_time_s', float('nan'))):.1f}</td></tr>"
        for title, ls in landscapes
    )
    body = f"""<h1>Provenance: wall times</h1>
<p><a href="index.html">Back to the paper</a>. Wall times are the one part of the write-up that changes from
run to run, so they are here and not in the paper itself (index.html has the same bytes on every clean run of
one config). Read from Snakemake's benchmark files (<code>benchmarks/**/*.tsv</code>: every heavy job that
ran before the paper; a job not rerun keeps its earlier time) and from the landscape files.</p>
<h2 id="jobs">Jobs</h2>
<p>{len(jobs)} benchmarked jobs, {total:.1f} s in all (summed; jobs ran in parallel, so the run took less).</p>
<table><thead><tr><th>job</th><th>wall s</th><th>peak RSS MB</th></tr></thead><tbody>
{rows}
</tbody></table>
<h2 id="landscapes">Landscapes</h2>
<table><thead><tr><th>landscape</th><th>wall s (grid, summed over shards)</th></tr></thead><tbody>
{ls_rows}
</tbody></table>"""
    Path(out).write_text(PAGE.format(title="Provenance: wall times", body=body), encoding="utf-8")


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


def _claims_context(table: pd.DataFrame | None) -> dict | None:
    if table is None:
        return None
    records = table.to_dict("records")
    counts = {v: sum(r["verdict"] == v for r in records) for v in ("holds", "does not hold", "inconclusive")}
    return {"rows": records, "by_id": {r["id"]: r for r in records}, "counts": counts, "html": claims_html(table)}


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
    claims: pd.DataFrame | None = None,
    provenance: dict | None = None,
    **sections: dict | None,
) -> None:
    """Render ``template`` (Markdown with Jinja2) to a standalone HTML page at ``out``; ``dynamics``:
    the dynamics section's context (llmscape.dynamics.report.paper_context), None without one;
    ``basins``: the Basins section's (llmscape.basins.report.paper_context), None without one;
    ``claims``: the claims table (llmscape.claims); ``provenance``: the appendix's context
    (``provenance_context``); any other keyword: a further section's context, by its name."""
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
        "claims": _claims_context(claims),
        "provenance": provenance,
        **sections,
    }
    text = env.get_template(Path(template).name).render(**context)
    body = markdown.markdown(text, extensions=["tables", "fenced_code", "toc"])
    title = text.splitlines()[0].lstrip("# ").strip()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(PAGE.format(title=title, body=body), encoding="utf-8")
