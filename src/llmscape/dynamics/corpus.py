"""The corpus: real text that something installed on this machine provides, found at run time.

Like the embedded model, the text is not part of llmscape: the config lists where to look
(``dynamics.corpus.sources``) and the first source that exists is used. A source is

* a path to a text file (``/usr/share/common-licenses/GPL-3``, Debian's base-files), or
* ``package:<distribution>:<path>``: a file an installed Python distribution ships, found
  through ``importlib.metadata`` as the first of its recorded files whose path is
  ``<path>`` or ends in ``/<path>`` (``package:transformers:LICENSE`` is the Apache-2.0
  text in transformers' dist-info).

The file's path and sha256 go into the provenance of everything computed from it; when
nothing is found, the error lists every place it looked and why each failed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from llmscape.errors import LlmscapeError

PACKAGE = "package:"


def _package_file(source: str) -> tuple[Path | None, str]:
    """(the file, '') or (None, why not) for a ``package:<distribution>:<path>`` source."""
    import importlib.metadata as md

    try:
        dist_name, rel = source[len(PACKAGE) :].split(":", 1)
    except ValueError:
        return None, "not of the form package:<distribution>:<path>"
    try:
        dist = md.distribution(dist_name)
    except md.PackageNotFoundError:
        return None, f"distribution {dist_name!r} is not installed"
    rel = rel.strip("/")
    for f in sorted(dist.files or [], key=str):
        posix = f.as_posix()
        if posix == rel or posix.endswith("/" + rel):
            path = Path(f.locate())
            if path.is_file():
                return path, ""
    return None, f"{dist_name} {dist.version} ships no file {rel!r}"


def locate(source: str) -> tuple[Path | None, str]:
    """Where one source is on this machine: (path, '') or (None, why it is not usable)."""
    if source.startswith(PACKAGE):
        return _package_file(source)
    path = Path(source)
    if not path.is_file():
        return None, "no such file"
    return path.resolve(), ""


def find_corpus(sources: list[str]) -> Path:
    """The first source that exists, or an error naming every place looked at."""
    tried = []
    for source in sources:
        path, why = locate(source)
        if path is not None:
            return path
        tried.append(f"{source} ({why})")
    raise LlmscapeError(
        "dynamics.corpus: no corpus text found; looked at " + "; ".join(tried) + ". Add a readable text file "
        "(or package:<distribution>:<file>) to dynamics.corpus.sources"
    )


def sha256_of(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
