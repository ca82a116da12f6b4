"""Running a library step as a batch job: log to file and stderr, fail with a message.

Workflow scripts wrap their body in ``run_job``; a user-facing ``LlmscapeError`` ends
the job with its message (no traceback), anything else keeps its traceback. When a run
fails, ``failures`` names each failed job and its error for the Snakefile's ``onerror``.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from llmscape.errors import LlmscapeError


def setup_logging(log_path: str | None = None) -> logging.Logger:
    log = logging.getLogger("llmscape")
    log.setLevel(logging.INFO)
    log.handlers.clear()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    handlers = [logging.StreamHandler(sys.stderr)]
    if log_path:
        handlers.append(logging.FileHandler(log_path, mode="w"))
    for h in handlers:
        h.setFormatter(fmt)
        log.addHandler(h)
    return log


def run_job(body: Callable[[], None], log_path: str | None = None, threads: int = 1) -> None:
    log = setup_logging(log_path)
    torch.set_num_threads(max(1, int(threads)))
    try:
        body()
    except LlmscapeError as exc:
        log.error("%s", exc)
        sys.exit(1)
    except Exception as exc:  # an unexpected failure: its traceback goes to the job's log too
        log.exception("%s: %s", type(exc).__name__, exc)
        sys.exit(1)


_FAILED = re.compile(r"^Error in rule (\S+):$")
_LOG = re.compile(r"^\s+log: (.+?)(?: \(check log file\(s\) for error details\))?$")
_EXCEPTION = re.compile(r"^(?:[\w.]+(?:Error|Exception|Interrupt)\b|\S+ ERROR )")


def failures(snakemake_logs: list[str | Path] | str | Path) -> list[str]:
    """One line per failed job of a Snakemake run: the rule, its log and the error that ended it.

    Read from Snakemake's own log (its ``Error in rule`` blocks) and each job's log: the
    llmscape ``ERROR`` line, else the first line of the last exception of a traceback."""
    paths = [snakemake_logs] if isinstance(snakemake_logs, str | Path) else snakemake_logs
    lines = [line for p in paths for line in _read_lines(p)]
    out = []
    for i, line in enumerate(lines):
        match = _FAILED.match(line)
        if not match:
            continue
        logs = [m.group(1) for m in map(_LOG.match, lines[i + 1 : i + 12]) if m]
        reason = "no log"
        for job_log in (p.strip() for p in logs[0].split(",")) if logs else ():
            found = [s for s in _read_lines(job_log) if _EXCEPTION.match(s)]
            if found:
                reason = found[-1].split(" ERROR ", 1)[-1]
        where = f" (log: {logs[0]})" if logs else ""
        out.append(f"llmscape: job {match.group(1)} failed: {reason}{where}")
    return out


def _read_lines(path: str | Path) -> list[str]:
    try:
        return Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return []
