"""The interactive explorer: one self-contained HTML page (``paper/explorer.html``) in which the reader picks
a study, a layer entry, a direction and a metric from menus, and sees that landscape as a surface, a
contour map or (1-D) a curve.

Offline: plotly.js is inlined once, and every landscape's data is embedded as one JSON object,

    {"studies": {<study>: {<layer>: {<direction>: {"title": str, "axes": [[...], ...],
                                                   "metrics": {<metric>: nested list}}}}}}

with values rounded to 7 significant digits and non-finite ones as ``null``. Studies are the config's
landscape studies (metrics ``loss``, ``token_loss``, ``accuracy`` and each capability grid
``<set>/<metric>``); ``dynamics`` (the re-centred slices: layer = the evaluation set, direction =
``step <t>``; and the PCA landscape) when the dynamics study ran; and ``basins/<basin>`` (each basin
search: layer = the layer entry, direction = ``random-<i>`` or the direction's name, metrics = the loss
and each capability at the points where it was evaluated, each with its own abscissa under ``"x"``).
The view is also kept in the page's address
(``explorer.html#study=seed&layer=first&direction=random&metric=loss&view=surface``), so the paper
links straight to one landscape. The bytes depend only on the results files (no timestamp, no random id).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from llmscape.store import Landscape

METRICS = ("loss", "token_loss", "accuracy")


def _rounded(x) -> object:
    if isinstance(x, np.ndarray):
        return [_rounded(v) for v in x]
    x = float(x)
    return float(f"{x:.7g}") if math.isfinite(x) else None


def curves_entry(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str) -> dict:
    """A 1-D entry whose metrics each have their own abscissa (a basin search evaluates each metric only
    where its brackets need it): {metric: (a, values)}, sorted by a."""
    return {
        "title": title,
        "axes": [[]],
        "x": {k: _rounded(np.asarray(a)) for k, (a, _) in curves.items()},
        "metrics": {k: _rounded(np.asarray(v)) for k, (_, v) in curves.items()},
    }


def entry(ls: Landscape, title: str) -> dict:
    """One landscape's menu entry: its title, axes and every metric grid."""
    metrics = {m: getattr(ls, m) for m in METRICS} | dict(sorted(ls.extra.items()))
    return {
        "title": title,
        "axes": [_rounded(np.asarray(a)) for a in ls.axes],
        "metrics": {k: _rounded(np.asarray(v)) for k, v in metrics.items()},
    }


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: Georgia, serif; margin: 1rem 2rem; }}
label {{ margin-right: 1.2rem; }}
select {{ font-size: 1rem; }}
#figure {{ width: 100%; height: 78vh; }}
#note {{ color: #555; font-size: 0.9em; }}
</style>
<script>{plotly}</script>
</head><body>
<h1>{title}</h1>
<p><a href="index.html">Back to the paper</a>. Pick a landscape: every grid below is read from
<code>results/</code> (the same files as the paper's figures).</p>
<p>
<label>study <select id="study"></select></label>
<label>layer <select id="layer"></select></label>
<label>direction <select id="direction"></select></label>
<label>metric <select id="metric"></select></label>
<label>view <select id="view"><option value="surface">surface</option><option value="contour">contour</option>
</select></label>
</p>
<p id="note"></p>
<div id="figure" class="plotly-graph-div"></div>
<script id="llmscape-data" type="application/json">{data}</script>
<script>
const DATA = JSON.parse(document.getElementById("llmscape-data").textContent);
const ids = ["study", "layer", "direction", "metric", "view"];
const sel = Object.fromEntries(ids.map(k => [k, document.getElementById(k)]));
function fill(select, keys, want) {{
  select.innerHTML = "";
  for (const k of keys) {{
    const o = document.createElement("option"); o.value = k; o.textContent = k; select.appendChild(o);
  }}
  if (keys.includes(want)) select.value = want;
}}
function state() {{ return Object.fromEntries(ids.map(k => [k, sel[k].value])); }}
function fromHash() {{
  const want = {{}};
  for (const part of location.hash.replace(/^#/, "").split("&")) {{
    const [k, v] = part.split("="); if (k) want[k] = decodeURIComponent(v || "");
  }}
  return want;
}}
function update(want) {{
  want = Object.assign(state(), want || {{}});
  fill(sel.study, Object.keys(DATA.studies), want.study);
  const study = DATA.studies[sel.study.value];
  fill(sel.layer, Object.keys(study), want.layer);
  const layer = study[sel.layer.value];
  fill(sel.direction, Object.keys(layer), want.direction);
  const item = layer[sel.direction.value];
  fill(sel.metric, Object.keys(item.metrics), want.metric);
  if (want.view) sel.view.value = want.view;
  history.replaceState(null, "", "#" + ids.map(k => k + "=" + encodeURIComponent(sel[k].value)).join("&"));
  return draw(item, sel.metric.value, sel.view.value);
}}
function draw(item, metric, view) {{
  const z = item.metrics[metric];
  let traces, layout = {{title: {{text: item.title + " — " + metric, font: {{size: 14}}}}, margin: {{t: 50}}}};
  if (item.axes.length === 1) {{
    const x = item.x ? item.x[metric] : item.axes[0];
    traces = [{{x: x, y: z, mode: "lines+markers", type: "scatter"}}];
    layout.xaxis = {{title: {{text: "alpha"}}}}; layout.yaxis = {{title: {{text: metric}}}};
    sel.view.disabled = true;
  }} else if (view === "contour") {{
    traces = [{{x: item.axes[1], y: item.axes[0], z: z, type: "contour", colorscale: "Viridis"}}];
    layout.xaxis = {{title: {{text: "beta"}}}}; layout.yaxis = {{title: {{text: "alpha"}}}};
    sel.view.disabled = false;
  }} else {{
    traces = [{{x: item.axes[1], y: item.axes[0], z: z, type: "surface", colorscale: "Viridis"}}];
    layout.scene = {{xaxis: {{title: {{text: "beta"}}}}, yaxis: {{title: {{text: "alpha"}}}},
                    zaxis: {{title: {{text: metric}}}}}};
    sel.view.disabled = false;
  }}
  const n = item.x ? item.x[metric].length + " evaluated points (a basin search)" :
    item.axes.map(a => a.length).join(" × ") + " grid points";
  document.getElementById("note").textContent = n + "; null (not finite) points are left out.";
  return Plotly.react("figure", traces, layout, {{responsive: true}});
}}
for (const k of ids) sel[k].addEventListener("change", () => update({{}}));
window.addEventListener("hashchange", () => update(fromHash()));
update(fromHash());
</script>
</body></html>
"""


def write(studies: dict[str, dict[str, dict[str, dict]]], title: str, out: str | Path) -> None:
    """The explorer page at ``out`` from {study: {layer: {direction: entry(...)}}} (plotly.js inlined)."""
    from plotly.offline import get_plotlyjs

    data = json.dumps({"studies": studies}, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    page = PAGE.format(title=title, plotly=get_plotlyjs(), data=data)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(page, encoding="utf-8")
