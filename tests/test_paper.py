"""The rendered write-up of the tiny end-to-end run (conftest.tiny_run): checked in headless Chromium, and
reproduced byte for byte by a second clean run; a changed grid reruns exactly its study's jobs and the paper."""

from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import parse_qsl

import browser
import numpy as np
import pytest
from workflow_helpers import ROOT, dry_run_jobs, run_snakemake, write_config

from llmscape.store import METRICS, Landscape

# Where the browser test leaves its screenshots for a person to look at.
SCREENSHOTS = Path(os.environ.get("LLMSCAPE_SCREENSHOTS", ROOT / ".screenshots"))


@pytest.mark.slow
def test_the_paper_in_a_real_browser(tiny_run, tmp_path):
    reason = browser.why_unavailable()
    if reason:
        pytest.skip(reason)
    browser.ensure_installed()
    paper = tiny_run.workdir / "results/tiny/paper/index.html"
    pages = [paper.resolve(), *[p for p in browser.linked_pages(paper) if p != paper.resolve()]]
    names = {p.name for p in pages}
    assert {"explorer.html", "provenance.html"} <= names and sum(n.endswith("-random.html") for n in names) == 2
    result = browser.check_pages(pages, tmp_path)
    assert not result["console"], "console messages:\n" + "\n".join(result["console"])
    seen = {browser.file_of(p["url"])[0]: p for p in result["pages"]}
    assert set(seen) == set(pages), result["pages"]
    ids = {path: set(p["ids"]) for path, p in seen.items()}
    explorer = None
    for path, page in seen.items():
        assert "error" not in page, page
        text = path.read_text(encoding="utf-8")
        # every image decodes, and every one the file holds was found
        assert len(page["images"]) == text.count("<img "), path
        assert all(i["complete"] and i["width"] > 0 for i in page["images"]), (path, page["images"])
        # every interactive figure draws: plotly graphs drawn = figure divs embedded in the file
        assert page["graphs"] == text.count('class="plotly-graph-div') and page["drawn"] == page["graphs"], path
        # nothing comes from the network
        assert all(u.startswith(("file:", "data:", "blob:")) for u in page["resources"]), page["resources"]
        assert page["text"] > 0
        if "explorer" in page:
            explorer = page["explorer"]
    assert seen[paper.resolve()]["images"] and seen[paper.resolve()]["graphs"] == 0  # static figures, linked surfaces
    # the explorer draws every landscape in every view
    assert explorer and explorer["views"] == 2 * 2 + 1 and not explorer["failed"], explorer
    # every internal link resolves: the file exists, the anchor exists there, an explorer view names a landscape
    n_links = 0
    for page in result["pages"]:
        for url in page["links"]:
            path, fragment = browser.file_of(url)
            if path is None:  # an external link (plotly's logo in its mode bar): not loaded, not internal
                assert url.startswith("https://"), url
                continue
            assert path.exists(), f"{page['url']}: broken link {url}"
            n_links += 1
            if not fragment:
                continue
            if "=" in fragment:
                view = dict(parse_qsl(fragment))
                assert view["direction"] in explorer["menu"][view["study"]][view["layer"]], url
            else:
                assert fragment in ids.get(path, set()), f"{page['url']}: no #{fragment} in {path}"
    assert n_links >= 10
    # screenshots for a person to look at
    shots = [
        browser.screenshot(paper, SCREENSHOTS / "paper.png"),
        browser.screenshot(paper.parent / "explorer.html", SCREENSHOTS / "explorer.png", height=1000),
    ]
    print("screenshots:", *shots)
    assert all(s.stat().st_size > 10_000 for s in shots)


def _landscapes(r: Path) -> list[Path]:
    return sorted(p.relative_to(r) for p in (r / "landscapes").rglob("*.h5"))


@pytest.mark.slow
def test_two_clean_runs_give_the_same_bytes_and_a_changed_grid_reruns_only_its_study(tiny_run, tmp_path):
    t0 = time.monotonic()
    write_config(tmp_path, tiny_run.config)
    run_snakemake(tmp_path, "--cores", "2")
    second = time.monotonic() - t0
    a, b = tiny_run.workdir / "results/tiny", tmp_path / "results/tiny"
    assert _landscapes(a) == _landscapes(b) and len(_landscapes(a)) == 3 + 2 * 2 + 1  # merged, and their shards
    for rel in _landscapes(a):
        la, lb = Landscape.load(a / rel), Landscape.load(b / rel)
        assert la.attrs["identity"] == lb.attrs["identity"], rel
        for name in (*METRICS, "per_sequence_loss", "computed"):
            assert np.array_equal(getattr(la, name), getattr(lb, name), equal_nan=True), (rel, name)
        assert all(np.array_equal(x, y) for x, y in zip(la.axes, lb.axes, strict=True))
    figures = sorted(p.relative_to(a) for p in (a / "figures").rglob("*") if p.suffix in (".png", ".pdf", ".html"))
    assert len(figures) >= 3 * 3 + 2 * 2
    differ = [str(f) for f in figures if (a / f).read_bytes() != (b / f).read_bytes()]
    assert not differ, f"figures differ between two clean runs: {differ}"
    # the write-up: wall times live only on provenance.html, the one page that differs from run to run
    for page in ("paper/index.html", "paper/explorer.html", "tables/claims.csv"):
        assert (a / page).read_bytes() == (b / page).read_bytes(), page
    print(f"second clean run: {second:.1f} s (first: {tiny_run.seconds:.1f} s)")

    changed = {**tiny_run.config, "studies": {**tiny_run.config["studies"]}}
    changed["studies"]["layers"] = {**changed["studies"]["layers"], "grid": {"dims": 2, "points": 7, "min": -0.5,
                                                                            "max": 0.5}}  # fmt: skip
    write_config(tmp_path, changed)
    jobs = dry_run_jobs(run_snakemake(tmp_path, "-n").stdout)
    rules = sorted({rule for rule, _ in jobs})
    assert rules == ["all", "claims", "compare_study", "merge", "paper", "plot_landscape", "surface"], rules
    studies = {w for rule, w in jobs if rule not in ("all", "claims", "paper")}
    assert all("study=layers" in w for w in studies), studies
    assert sum(rule == "surface" for rule, _ in jobs) == 2 * 2  # two landscapes, two shards each
