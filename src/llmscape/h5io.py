"""Reading and writing llmscape's HDF5 files: one way for every file kind.

Every file carries two root attributes, ``format = "llmscape-<kind>"`` and
``format_version``; a reader checks both before it touches a dataset, so a foreign,
outdated or truncated file is refused with an ``LlmscapeError`` naming it instead of a
``KeyError`` deep inside a step. Writers go to a temporary name in the same directory
and rename into place, so a crash, a kill or a full disk never leaves a file that
reads as complete. Structured attributes (dicts, lists) are stored as JSON strings, so
the files open with plain ``h5py`` (docs/results-format.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

from llmscape.errors import LlmscapeError

# The layout version of each file kind; a breaking change to a layout bumps its number.
VERSIONS = {
    "landscape": 1,
    "directions": 1,
    "eval-set": 1,
    "spectrum": 2,
    "trajectory": 1,
    "probe-set": 1,
    "basin": 1,
    "exact-spectrum": 1,
    "curves": 1,
    "attention": 1,
}
_RESERVED = ("format", "format_version")


def _check_kind(kind: str) -> None:
    if kind not in VERSIONS:
        raise ValueError(f"unknown llmscape file kind {kind!r}; known: {sorted(VERSIONS)}")


def tmp_path(path: Path) -> Path:
    """Where ``write`` puts a file before renaming it (also what a cleanup of a killed run looks for)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


@contextmanager
def write(path: str | Path, kind: str) -> Iterator[h5py.File]:
    """An open, new file of ``kind`` that appears at ``path`` only once the block has finished."""
    _check_kind(kind)
    path = Path(path)
    tmp = tmp_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = f"llmscape-{kind}"
            f.attrs["format_version"] = VERSIONS[kind]
            yield f
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise LlmscapeError(f"cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def read(path: str | Path, kind: str) -> Iterator[h5py.File]:
    """``path`` opened read-only after checking that it is a complete file of ``kind`` and version."""
    _check_kind(kind)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise LlmscapeError(f"{path} is unreadable as an llmscape {kind} file: {exc}") from exc
    with f:
        found = f.attrs.get("format")
        if found != f"llmscape-{kind}":
            raise LlmscapeError(f"{path} is not an llmscape {kind} file (its format attribute is {found!r})")
        version = f.attrs.get("format_version")
        if version != VERSIONS[kind]:
            raise LlmscapeError(
                f"{path} is a {kind} file of format version {version}, this llmscape reads version "
                f"{VERSIONS[kind]}: delete it and rerun the step that made it"
            )
        try:
            yield f
        except (KeyError, OSError) as exc:
            raise LlmscapeError(f"{path} is unreadable ({kind} file incomplete or corrupt): {exc}") from exc


def set_attrs(obj: h5py.HLObject, attrs: dict) -> None:
    """Write attributes; dicts and lists as JSON strings (sorted keys: same content, same bytes)."""
    for key, value in attrs.items():
        if key in _RESERVED:
            raise ValueError(f"attribute {key!r} is set by llmscape.h5io itself")
        obj.attrs[key] = json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else value


def get_attrs(obj: h5py.HLObject) -> dict:
    """Attributes as Python values (JSON strings decoded), without ``format``/``format_version``."""
    return {key: _decode(value) for key, value in obj.attrs.items() if key not in _RESERVED}


def _decode(value):
    if isinstance(value, str) and value[:1] in ("{", "["):  # not `in "{["`: the empty string is in every string
        return json.loads(value)
    if isinstance(value, np.generic):
        return value.item()
    return value
