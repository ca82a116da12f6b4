"""Running a library step as a batch job: log to file and stderr, fail with a message.

Workflow scripts wrap their body in ``run_job``; a user-facing ``LlmscapeError`` ends
the job with its message (no traceback), anything else keeps its traceback.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

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
