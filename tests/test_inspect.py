"""llmscape-inspect: a model's layers, tensors and a config's selection, before any heavy job."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import yaml

from llmscape.inspect_model import describe
from llmscape.models import load_prepared, prepare_model
from llmscape.steps import target_names


def test_lists_layers_tensors_and_counts_of_a_source(tiny_dir):
    model, _ = load_prepared(tiny_dir)
    text = describe(str(tiny_dir))
    total = sum(p.numel() for p in model.parameters())
    assert text.splitlines()[0] == f"{tiny_dir}: LlamaForCausalLM, {total:,} parameters, 4 decoder layers"
    layer0 = {n.removeprefix("model.layers.0."): p for n, p in model.named_parameters() if ".layers.0." in n}
    rows = {line.split()[0]: line for line in text.splitlines() if line.startswith("  ")}
    for name, p in layer0.items():  # name, shape and count of every tensor of a layer
        assert str(list(p.shape)) in rows[name] and rows[name].endswith(f"{p.numel():,}"), rows[name]
    assert f"{sum(p.numel() for p in layer0.values()):,} parameters each" in text
    assert "lm_head.weight" in text  # untied in the tiny model


def test_the_selection_shown_is_the_one_the_workflow_perturbs(tiny_dir, tmp_path):
    prepared = tmp_path / "model"
    prepare_model(str(tiny_dir), prepared)
    study = {"tensors": [r"mlp\.(up|down)_proj"], "layers": ["last", -2, "all"], "directions": {"r": {}}}
    text = describe(str(prepared), {"studies": {"s": study}})
    for layer, header in (
        ("last", "last (layer 3): 2 tensors"),
        (-2, "-2 (layer 2): 2 tensors"),
        ("all", "all (all layers): 8"),
    ):
        names = target_names(prepared, {"tensors": study["tensors"], "layer": layer, "include_1d": False})
        assert header in text
        after = text.split(header, 1)[1].splitlines()[1:]
        shown = itertools.takewhile(lambda line: line.startswith("    "), after)  # this entry's tensor lines
        assert [line.split()[0] for line in shown] == names
        assert len(names) == int(header.split(": ")[1].split()[0])


def test_the_command_runs_and_reports_bad_sources_in_one_line(tmp_path):
    exe = Path(sys.executable).parent / "llmscape-inspect"
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"studies": {"s": {"tensors": ["q_proj"], "layers": ["first"]}}}))
    bad = subprocess.run([exe, str(tmp_path / "missing")], capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.startswith("llmscape-inspect: unknown model source")
    assert "Traceback" not in bad.stderr
