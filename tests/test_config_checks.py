"""Config errors are caught before any job, in one line naming the key and the value."""

from __future__ import annotations

import copy
import re

import pytest
import yaml
from workflow_helpers import ROOT, run_snakemake, write_config

from llmscape.config import before_defaults, check, ineffective, model_name
from llmscape.errors import LlmscapeError

SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"


def validated(raw: dict) -> dict:
    """``raw`` with the schema's defaults filled in, as the Snakefile has it before ``check``."""
    from snakemake.utils import validate

    config = copy.deepcopy(raw)
    before_defaults(config, SCHEMA)
    validate(config, str(SCHEMA))
    return config


def study(**overrides) -> dict:
    return {"tensors": [r"mlp\.up_proj"], "directions": {"r": {}}, **overrides}


def base(**studies) -> dict:
    return {"model": {"source": "embedded:smollm2-135m-instruct"}, "studies": studies or {"s": study()}}


def problems(raw: dict, **machine) -> str:
    config = validated(raw)
    with pytest.raises(LlmscapeError) as info:
        check(config, **{"cuda_available": False, "memory_bytes": 2**34, **machine})
    return str(info.value)


def test_schema_violations_name_key_value_and_rule_without_a_schema_dump():
    raw = base(s=study(grid={"points": "x", "dims": 3}))
    with pytest.raises(LlmscapeError) as info:
        before_defaults(raw, SCHEMA)
    message = str(info.value)
    assert "config['studies']['s']['grid']['points'] = 'x': 'x' is not of type 'integer'" in message
    assert "config['studies']['s']['grid']['dims'] = 3: 3 is not one of [1, 2]" in message
    assert "$schema" not in message and "description" not in message and len(message.splitlines()) == 3


@pytest.mark.parametrize(
    "raw, expected",
    [
        (base(s=study(tensors=["mlp[up"])), r"config\['studies'\]\['s'\]\['tensors'\]\[0\] = 'mlp\[up': not a regular"),
        (base(s=study(grid={"min": 1, "max": -1})), r"\['grid'\]: min = 1 must be below max = -1"),
        (base(s=study(grid={"points": 1})), r"\['grid'\]\['points'\] = 1: a landscape and its figures need at least 2"),
        (base(s=study(grid={"points": 3, "dims": 1}, shards=4)), r"\['shards'\] = 4: more shards than the grid's 3"),
        (
            base(s=study(grid={"min": -0.5, "max": 0.5})),
            r"config\['figures'\]\['radii'\] = \[0.25, 0.5, 1.0\]: \[1.0\] reach beyond study 's'",
        ),
        (base(a=study(), A=study()), r"names 'a' and 'A' differ only in case"),
        ({**base(), "data": {"kind": "files"}}, r"config\['data'\]\['files'\] is empty"),
        (
            {**base(), "data": {"kind": "files", "files": ["/no/such.txt"]}},
            r"\['files'\]\[0\] = '/no/such.txt': no such",
        ),
        ({**base(), "engine": {"device": "cuda:1"}}, r"config\['engine'\]\['device'\] = 'cuda:1': no CUDA GPU"),
    ],
)
def test_cross_key_problems_are_refused_with_key_and_value(raw, expected):
    assert re.search(expected, problems(raw)), problems(raw)


def test_a_grid_too_large_for_memory_is_refused_with_the_size_it_needs():
    raw = base(s=study(grid={"points": 3001}))
    message = problems(raw, memory_bytes=2**30)
    assert "9,006,001 points x 3 sequences need 0.54 GiB" in message and "this machine's 1.0 GiB" in message
    check(validated(raw), cuda_available=False, memory_bytes=2**34)  # fits on a bigger machine


def test_model_name_is_derived_from_the_source_when_absent(tmp_path):
    assert model_name("embedded:smollm2-135m-instruct") == "smollm2-135m-instruct"
    assert model_name("/models/my llama/") == "my-llama"
    assert model_name("HuggingFaceTB/SmolLM2-360M") == "SmolLM2-360M"
    (tmp_path / "tiny-gpt2").mkdir()
    (tmp_path / "tiny-gpt2/model.safetensors").write_bytes(b"")
    config = validated({"model": {"source": str(tmp_path / "tiny-gpt2")}, "studies": {"s": study()}})
    check(config, cuda_available=False, memory_bytes=2**34)
    assert config["model"]["name"] == "tiny-gpt2"


def test_an_unknown_model_source_is_a_config_error(tmp_path):
    assert re.search(r"unknown model source '/no/model'", problems({**base(), "model": {"source": "/no/model"}}))
    (tmp_path / "empty").mkdir()
    message = problems({**base(), "model": {"source": str(tmp_path / "empty")}})
    assert "holds no *.safetensors file" in message


def test_options_without_effect_are_warned_about_as_written():
    raw = {
        **base(s=study(directions={"r": {"method": "random", "tol": 0.1}}, curvature={"k": 5})),
        "engine": {"kind": "reference", "memory_mb": 10, "offload": "cpu"},
        "data": {"prompts": ["hi there"], "seq_len": 8},
    }
    assert ineffective(raw) == [
        "engine.memory_mb has no effect with engine.kind: reference",
        "engine.offload has no effect with engine.kind: reference",
        "engine.offload has no effect without engine.stream: true",
        "data.seq_len has no effect with data.kind: prompts",
        "studies.s.directions.r.tol has no effect with method: random",
        "studies.s.curvature options have no effect without enabled: true",
    ]
    assert ineffective(yaml.safe_load((ROOT / "config/config.yaml").read_text())) == []


def test_default_config_passes_every_check():
    config = validated(yaml.safe_load((ROOT / "config/config.yaml").read_text()))
    check(config, cuda_available=False, memory_bytes=2**34)
    assert config["model"]["name"] == "smollm2-135m"


def test_the_workflow_stops_before_any_job_with_one_clear_line(tmp_path):
    write_config(tmp_path, base(s=study(tensors=["("])))
    proc = run_snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0
    assert "llmscape: invalid config:\n  config['studies']['s']['tensors'][0] = '(': not a regular" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "results").exists()


def test_a_users_config_replaces_the_default_study(tmp_path):
    raw = base(mine=study(layers=["last"], grid={"dims": 1, "points": 3}))
    write_config(tmp_path, raw)
    out = run_snakemake(tmp_path, "-n").stdout
    assert "smollm2-135m-instruct/landscapes/mine/last-r.h5" in out
    assert "/seed/" not in out and "smollm2-135m/" not in out


def test_negative_layer_indices_do_not_start_file_names_with_a_dash(tmp_path):
    write_config(tmp_path, base(s=study(layers=[-1, "first"], grid={"dims": 1, "points": 3})))
    out = run_snakemake(tmp_path, "-n").stdout
    assert "landscapes/s/m1-r.h5" in out and "landscapes/s/first-r.h5" in out
    assert "/-1" not in out


def test_edited_inputs_rerun_what_depends_on_them(tmp_path, tiny_dir):
    import shutil

    model = shutil.copytree(tiny_dir, tmp_path / "model")
    text = tmp_path / "corpus.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 4)
    data = {"name": "corpus", "kind": "files", "files": [str(text)], "seq_len": 16}
    write_config(tmp_path, {"model": {"name": "m", "source": str(model)}, "data": data, "studies": {"s": study()}})
    target = "results/m/data/corpus.h5"
    run_snakemake(tmp_path, "--cores", "1", target)
    assert "Nothing to be done" in run_snakemake(tmp_path, "-n", target).stdout
    text.write_text("a different text now, long enough for one window or two.")
    rerun = run_snakemake(tmp_path, "-n", target).stdout
    assert "prepare_data" in rerun and "prepare_model" not in rerun
    (model / "config.json").write_text((model / "config.json").read_text() + "\n")  # an edit of the weights' dir
    rerun = run_snakemake(tmp_path, "-n", target).stdout
    assert "prepare_model" in rerun and "prepare_data" in rerun


def test_weight_spectra_can_be_switched_off(tmp_path):
    raw = base(s=study(layers=["last"], grid={"dims": 1, "points": 3}))
    write_config(tmp_path, raw)
    assert re.search(r"^weight_spectra\s+1", run_snakemake(tmp_path, "-n").stdout, re.M)
    write_config(tmp_path, {**raw, "weight_spectra": {"enabled": False}})
    out = run_snakemake(tmp_path, "-n").stdout
    assert not re.search(r"^weight_spectra\s", out, re.M) and re.search(r"^paper\s+1", out, re.M)
