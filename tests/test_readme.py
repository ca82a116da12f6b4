"""The README's library example runs as written (on the tiny model instead of SmolLM2)."""

from __future__ import annotations

import re

import numpy as np
from workflow_helpers import ROOT


def test_without_snakemake_example_runs(tiny_dir):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Without Snakemake", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert '"results/smollm2-135m/model"' in code and "model.layers.29." in code
    code = code.replace('"results/smollm2-135m/model"', repr(str(tiny_dir))).replace("layers.29.", "layers.3.")
    namespace: dict = {}
    exec(code, namespace)
    loss = namespace["loss"]
    assert loss.shape == (11, 11) and np.isfinite(loss).all()
