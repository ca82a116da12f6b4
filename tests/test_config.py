"""Config validation (defaults, errors naming the key) and bad-input errors of the library."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate
from workflow_helpers import ROOT, reversed_settings

from llmscape import grid
from llmscape.engine import DEFAULT_KIND, ENGINES, JOB_DEFAULTS, OPTION_DEFAULTS, OPTIONS_OF
from llmscape.errors import LlmscapeError
from llmscape.models import resolve_source
from llmscape.study import landscapes

SCHEMA = str(ROOT / "workflow/schemas/config.schema.yaml")
MINIMAL = {"studies": {"s": {"tensors": ["mlp"], "directions": {"r": {}}}}}


def test_defaults_are_filled():
    config = copy.deepcopy(MINIMAL)
    validate(config, SCHEMA)
    assert config["model"]["source"] == "embedded:smollm2-135m-instruct"
    assert config["engine"]["kind"] in ("reference", "fast")
    s = config["studies"]["s"]
    assert s["layers"] == ["first", "middle", "last"] and s["grid"]["points"] == 21
    assert s["directions"]["r"] == {
        "method": "random",
        "norm": "filter",
        "seed": 0,
        "solver": "lanczos",
        "tol": 0.001,
        "max_iter": 100,
        "objective": "loss",  # method worst (llmscape.basins)
        "radius": 0.05,
        "steps": 10,
        "step_size": 0.5,
        "source": None,  # method checkpoint
    }
    assert s["curvature"]["enabled"] is False and s["shards"] == 1
    assert [(x.layer, x.direction) for x in landscapes(config)] == [("first", "r"), ("middle", "r"), ("last", "r")]


def test_default_config_is_valid():
    validate(yaml.safe_load((ROOT / "config/config.yaml").read_text()), SCHEMA)


@pytest.mark.parametrize(
    "path, value, words",
    [
        (("studies", "s", "grid", "points"), 0, ["points", "minimum"]),
        (("studies", "s", "directions", "r", "norm"), "rows", ["norm", "filter"]),
        (("model", "dtype"), "int8", ["dtype", "float32"]),
        (("studies", "s", "layers"), ["top"], ["layers"]),
        (("studies", "s", "typo"), 1, ["typo"]),
    ],
)
def test_errors_name_the_key(path, value, words):
    config = copy.deepcopy(MINIMAL)
    node = config
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    with pytest.raises(WorkflowError) as err:
        validate(config, SCHEMA)
    for word in words:
        assert word in str(err.value)


def test_unknown_model_source():
    with pytest.raises(LlmscapeError, match="unknown model source"):
        resolve_source("./no/such/dir")
    with pytest.raises(LlmscapeError, match="unknown embedded model"):
        resolve_source("embedded:gpt-9")
    assert resolve_source("HuggingFaceTB/SmolLM2-135M")["kind"] == "hub"


def test_empty_grid_is_an_error():
    with pytest.raises(LlmscapeError, match="empty grid"):
        grid.axes({"dims": 2, "points": 0})
    with pytest.raises(LlmscapeError, match="exceed"):
        grid.axes({"dims": 1, "points": 3, "min": 1, "max": -1})


def test_engine_defaults_agree_with_the_library():
    """The schema's engine defaults are the library's (llmscape.engine), key by key."""
    schema = yaml.safe_load(Path(SCHEMA).read_text())["properties"]["engine"]["properties"]
    library = {"kind": DEFAULT_KIND, **OPTION_DEFAULTS, **JOB_DEFAULTS}
    assert sorted(schema) == sorted(library)
    for key, value in library.items():
        assert repr(schema[key]["default"]) == repr(value), key  # repr: 1 is not True, 30 is not 30.0
    assert schema["kind"]["enum"] == list(ENGINES)
    assert not set(OPTION_DEFAULTS) & set(JOB_DEFAULTS)
    assert set(OPTION_DEFAULTS) == {k for kind in ENGINES for k in OPTIONS_OF[kind]}
    config = copy.deepcopy(MINIMAL)
    validate(config, SCHEMA)
    assert config["engine"] == library


def test_the_same_settings_in_another_key_order_give_the_same_config():
    # Snakemake compares a job's params as written, key order included (Snakefile: in_schema_order)
    from llmscape.config import check, in_schema_order

    default = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    reordered = reversed_settings(default)
    reordered["studies"]["seed"]["grid"]["points"] = reordered["studies"]["seed"]["grid"].pop("points")
    reordered["model"] = {"trust_remote_code": False, **reordered["model"]}  # a default written out, first
    assert json.dumps(reordered) != json.dumps(default)
    for config in (default, reordered):
        validate(config, SCHEMA)
        check(config, cuda_available=False, memory_bytes=2**40)
        in_schema_order(config, SCHEMA)
    assert json.dumps(reordered) == json.dumps(default)
    assert list(default["studies"]["seed"]["directions"]) == ["random", "hessian"]  # named entries keep theirs
    assert list(default["model"]) == ["name", "source", "dtype", "trust_remote_code"]
