"""Headless Chromium for checking the rendered paper as a reader's browser shows it.

Needs Debian's ``chromium`` (installed with apt-get when missing and running as root, as
tests/slurm_cluster.py installs SLURM). ``check_pages`` opens the pages a few per browser run, from
file:// with name resolution switched off (no network), inside a wrapper page that reads each page's
DOM (``--disable-web-security`` lets a file:// page read its file:// iframes) and writes what it found
into its own DOM as JSON, read back with ``--dump-dom``. Console messages come from Chromium's own log
(``--enable-logging=stderr``), which names the page of each. ``screenshot`` writes a PNG of one page.

    python tests/browser.py results/<model>/paper/index.html   # by hand: the same checks, printed
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

import apt_packages

PACKAGES = ("chromium",)
# Console lines Chromium itself writes about a page's use of canvas or WebGL: performance advice, not errors.
BENIGN = ("willReadFrequently", "GPU stall due to ReadPixels", "Automatic fallback to software WebGL")
FLAGS = [
    "--headless",
    "--no-sandbox",  # as root
    "--disable-gpu-sandbox",
    "--use-angle=swiftshader",  # WebGL (plotly's 3-D surfaces) in software
    "--enable-unsafe-swiftshader",
    "--no-first-run",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-component-update",
    "--host-resolver-rules=MAP * ~NOTFOUND",  # no name resolves: no network
    "--hide-scrollbars",
]


class BrowserError(RuntimeError):
    pass


def binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def why_unavailable() -> str | None:
    """None if headless Chromium can run here (possibly after installing it), else the reason."""
    if binary():
        return None
    if sys.platform != "linux":
        return "headless Chromium is not installed (and is installed by the test only on Linux)"
    if shutil.which("apt-get") is None:
        return "Chromium is not installed and there is no apt-get to install it"
    if os.geteuid() != 0:
        return "Chromium is not installed and installing it needs root"
    return None


def ensure_installed(log=print) -> float:
    """apt-get install chromium if it is missing; seconds spent."""
    if binary():
        return 0.0
    log(f"installing {' '.join(PACKAGES)}")
    spent = apt_packages.install(PACKAGES, BrowserError)
    if not binary():
        raise BrowserError(f"after installing {PACKAGES}, no chromium binary")
    return spent


WRAPPER = """<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>
<pre id="llmscape-check">pending</pre>
{frames}
<script>
const PAGES = {pages};
const sleep = ms => new Promise(r => setTimeout(r, ms));
function drawn(el) {{
  const data = el._fullData || [];
  if (!data.length || !el.querySelector(".main-svg")) return false;
  const gl = data.some(t => ["surface", "scatter3d", "mesh3d"].includes(t.type));
  return !gl || !!el.querySelector("canvas");  // a 3-D scene draws on a WebGL canvas
}}
function inspect(frame) {{
  const doc = frame.contentDocument, win = frame.contentWindow;
  const graphs = [...doc.querySelectorAll(".plotly-graph-div")];
  return {{
    url: win.location.href,
    title: doc.title,
    images: [...doc.images].map(i => ({{src: i.src.slice(0, 60), complete: i.complete, width: i.naturalWidth}})),
    graphs: graphs.length,
    drawn: graphs.filter(drawn).length,
    links: [...doc.querySelectorAll("a[href]")].map(a => a.href),
    ids: [...doc.querySelectorAll("[id]")].map(e => e.id),
    resources: [...doc.querySelectorAll("img[src], script[src], link[href], iframe[src]")]
      .map(e => e.src || e.href),
    text: doc.body ? doc.body.innerText.length : 0,
  }};
}}
async function explore(frame) {{
  // the explorer: draw every study, layer and direction in every view, record what failed to draw
  const win = frame.contentWindow, out = {{views: 0, failed: [], menu: {{}}}};
  const data = win.eval("DATA");
  for (const [study, layers] of Object.entries(data.studies)) {{
    out.menu[study] = {{}};
    for (const [layer, directions] of Object.entries(layers)) {{
      out.menu[study][layer] = Object.keys(directions);
      for (const [direction, item] of Object.entries(directions)) {{
        for (const view of (item.axes.length === 2 ? ["surface", "contour"] : ["surface"])) {{
          await win.update({{study, layer, direction, view}});
          await sleep(50);
          out.views += 1;
          const el = frame.contentDocument.querySelector(".plotly-graph-div");
          if (!drawn(el)) out.failed.push([study, layer, direction, view].join("/"));
        }}
      }}
    }}
  }}
  return out;
}}
window.addEventListener("load", async () => {{
  await sleep({settle});
  const out = [];
  for (const frame of document.querySelectorAll("iframe")) {{
    try {{
      const page = inspect(frame);
      if (frame.contentWindow.update && frame.contentDocument.getElementById("llmscape-data")) {{
        page.explorer = await explore(frame);
      }}
      out.push(page);
    }} catch (e) {{ out.push({{url: frame.src, error: String(e)}}); }}
  }}
  document.getElementById("llmscape-check").textContent = JSON.stringify(out);
}});
</script></body></html>
"""


def _run(args: list[str], timeout: int) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="llmscape-chromium-") as profile:
        cmd = [binary(), *FLAGS, f"--user-data-dir={profile}", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def console_messages(stderr: str) -> list[str]:
    """Chromium's log lines of console messages (any level), less the benign ones."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line and not any(b in line for b in BENIGN)]


def check_pages(pages: list[Path], work: Path, batch: int = 8, budget_ms: int = 60000, timeout: int = 300) -> dict:
    """Open ``pages`` in headless Chromium, ``batch`` at a time (one browser has 16 WebGL contexts, and the
    default paper's surface pages hold more together); returns {"pages": [per page: url, images, graphs,
    drawn, links, ids, resources, explorer (for the explorer: views drawn, failures, its menus)],
    "console": [messages], "stderr": the last batch's log tail}."""
    out = {"pages": [], "console": []}
    for i in range(0, len(pages), batch):
        found = _check_batch(pages[i : i + batch], work / f"batch-{i // batch}", budget_ms, timeout)
        out = {"pages": out["pages"] + found["pages"], "console": out["console"] + found["console"]}
        out["stderr"] = found["stderr"]
    return out


def _check_batch(pages: list[Path], work: Path, budget_ms: int, timeout: int) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    frames = "\n".join(f'<iframe src="{p.resolve().as_uri()}" width="1280" height="900"></iframe>' for p in pages)
    wrapper = work / "check-pages.html"
    wrapper.write_text(WRAPPER.format(frames=frames, pages=json.dumps([str(p) for p in pages]), settle=1500))
    proc = _run(
        [
            "--disable-web-security",
            "--allow-file-access-from-files",
            "--enable-logging=stderr",
            "--v=0",
            f"--virtual-time-budget={budget_ms}",
            "--window-size=1400,1000",
            "--dump-dom",
            wrapper.as_uri(),
        ],
        timeout,
    )
    match = re.search(r'<pre id="llmscape-check">(.*?)</pre>', proc.stdout, re.S)
    if not match or match.group(1) == "pending":
        raise BrowserError(f"the check page did not finish (rc {proc.returncode}):\n{proc.stderr[-4000:]}")
    import html

    return {
        "pages": json.loads(html.unescape(match.group(1))),
        "console": console_messages(proc.stderr),
        "stderr": proc.stderr[-4000:],
    }


def screenshot(page: Path, png: Path, width: int = 1280, height: int = 2400, timeout: int = 180) -> Path:
    """A PNG of ``page`` as a reader's window of width × height shows it (its top)."""
    png.parent.mkdir(parents=True, exist_ok=True)
    proc = _run(
        [
            f"--screenshot={png}",
            f"--window-size={width},{height}",
            "--virtual-time-budget=20000",
            page.resolve().as_uri(),
        ],
        timeout,
    )
    if not png.exists() or png.stat().st_size == 0:
        raise BrowserError(f"no screenshot of {page} (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    return png


def file_of(url: str) -> tuple[Path | None, str]:
    """The local file and fragment of a file:// URL (None for another scheme)."""
    u = urlparse(url)
    if u.scheme != "file":
        return None, u.fragment
    return Path(unquote(u.path)), unquote(u.fragment)


def linked_pages(page: Path) -> list[Path]:
    """The local .html pages ``page`` links to (relative hrefs), without duplicates, in order."""
    out = []
    for href in re.findall(r'href="([^"#:]+\.html)(?:#[^"]*)?"', page.read_text(encoding="utf-8")):
        target = (page.parent / unquote(href)).resolve()
        if target not in out:
            out.append(target)
    return out


if __name__ == "__main__":
    start = Path(sys.argv[1])
    pages = [start.resolve(), *[p for p in linked_pages(start) if p != start.resolve()]]
    result = check_pages(pages, Path(tempfile.mkdtemp(prefix="llmscape-check-")))
    for p in result["pages"]:
        print(p["url"], {k: v for k, v in p.items() if k in ("graphs", "drawn", "explorer", "error")})
        print("  images:", [i["width"] for i in p.get("images", [])])
    print("console:", *result["console"], sep="\n  ")
