"""Installing Debian packages for a test that needs a system program (SLURM, Chromium): apt-get update,
then apt-get install, as root; the caller decides first whether that is possible (why_unavailable)."""

from __future__ import annotations

import os
import subprocess
import time


def install(packages: tuple[str, ...], error: type[Exception] = RuntimeError) -> float:
    """apt-get update and install ``packages`` (no recommends); seconds spent. A failing command raises
    ``error`` with its output's tail."""
    t0 = time.monotonic()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = proc.stdout[-3000:] + proc.stderr[-3000:]
            raise error(f"{' '.join(cmd)} failed ({proc.returncode}):\n{tail}")
    return time.monotonic() - t0
