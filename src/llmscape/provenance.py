"""Provenance stored with every result: config, model hash, versions, seeds."""

from __future__ import annotations

import importlib.metadata
import platform

PACKAGES = ("llmscape", "torch", "transformers", "accelerate", "safetensors", "numpy", "h5py")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
