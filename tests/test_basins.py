"""Basins on a tiny Llama trained for a few steps (so that it sits in a basin): the search against a dense
grid, worst-case against random directions, checkpoint directions, fine-tunes, the curvature check, the
bootstrap interval, and the config errors named before any work."""

from __future__ import annotations

import copy
import json
import logging
import re

import numpy as np
import pytest
import torch
import yaml
from conftest import make_tiny_llama
from snakemake.utils import validate
from workflow_helpers import ROOT

from llmscape import probes as P
from llmscape.basins import directions as bd
from llmscape.basins import plan
from llmscape.basins import steps as S
from llmscape.basins.line import LineEvaluator, curvature_check
from llmscape.basins.search import Criterion, bootstrap_median, criteria, search
from llmscape.data import save_eval_set, tokenize
from llmscape.directions import normalize, random_directions
from llmscape.engine import build_engine
from llmscape.errors import LlmscapeError
from llmscape.loss import metrics
from llmscape.models import load_prepared, read_tensors, tensor_shapes
from llmscape.targets import select

TEXTS = ["hello world, this is a test", "loss landscapes of llms!", "abc abc abc abc"]
ITEMS = [{"context": f"{c}{c}{c}", "choices": [f"{c}", "%", "#"], "answer": 0} for c in "abcdefgh"] + [
    {"context": "hello worl", "choices": ["d", "x"], "answer": 0},
    {"context": "loss landscape", "choices": ["s", "q"], "answer": 0},
]
SCHEMA = str(ROOT / "workflow/schemas/config.schema.yaml")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny Llama trained 60 AdamW steps on its evaluation texts and the probe items' answers, so
    that the loss and the probe accuracy have a basin to leave; its directory, data file, probe file."""
    from llmscape.train import TrainSpec, train

    root = tmp_path_factory.mktemp("trained-tiny")
    path = make_tiny_llama(root / "model")
    model, tokenizer = load_prepared(path)
    texts = TEXTS + [it["context"] + it["choices"][0] for it in ITEMS] * 2
    names = [n for n, p in model.named_parameters() if p.dim() == 2]
    train(model, tokenize(texts, tokenizer), names, TrainSpec(steps=60, lr=3e-3, batch_size=8), root / "run")
    model.save_pretrained(path, safe_serialization=True)
    (path / "manifest.json").write_text(json.dumps({"sha256": "trained-tiny", "n_layers": 4}))
    save_eval_set(root / "data.h5", tokenize(TEXTS, tokenizer), {})
    items = root / "items.jsonl"
    items.write_text("\n".join(json.dumps(i) for i in ITEMS) + "\n")
    spec = P.ProbeSpec("toy", items, chat=False)
    P.save_probe_rows(root / "toy.h5", P.encode(spec, tokenizer))
    return {"dir": path, "data": root / "data.h5", "items": items, "probe": root / "toy.h5", "root": root}


def targets_of(model_dir, layer="all"):
    names = select(tensor_shapes(model_dir), [r"proj"], layer, 4)
    return names, read_tensors(model_dir, names)


def evaluator(trained, direction, kind="fast"):
    model, _ = load_prepared(trained["dir"])
    data = tokenize(TEXTS, load_prepared(trained["dir"])[1])
    ev = LineEvaluator(model, data, [P.load_probe_rows(trained["probe"])], {"kind": kind})
    ev.set_direction(direction)
    return ev, model, data


def test_search_finds_known_walls_and_uses_the_rows_it_needs():
    """f = 3 a^2 (loss), accuracy 1 inside |a| < 0.3 on the plus side, 0.7 on the minus side."""
    asked = []

    def evaluate(a, groups):
        asked.append(groups)
        out = {"loss": 3 * a**2}
        if "toy" in groups:
            out["toy/accuracy"] = np.where((a < 0.3) & (a > -0.7), 1.0, 0.5)
        return out

    crit = [Criterion("loss", "rise", 0.03), Criterion("toy/accuracy", "drop", 0.1, "toy")]
    s = search(evaluate, crit, {"loss": 0.0, "toy/accuracy": 1.0}, start=0.01, precision=0.05, max_radius=2.0)
    for side in ("plus", "minus"):
        assert s.radius["loss"][side] == pytest.approx(0.1, rel=0.05) and s.radius["loss"][side] <= 0.1
    assert 0.3 * 0.95 <= s.radius["toy/accuracy"]["plus"] < 0.3
    assert 0.7 * 0.95 <= s.radius["toy/accuracy"]["minus"] < 0.7
    assert frozenset() in asked  # points refining the loss's wall skip the probe rows
    assert not s.evaluated["toy/accuracy"].all() and s.evaluated["loss"].all()
    flat = search(lambda a, g: {"loss": 0 * a}, crit[:1], {"loss": 0.0}, start=0.5, precision=0.1, max_radius=2.0)
    assert flat.radius["loss"] == {"plus": 2.0, "minus": 2.0} and flat.censored["loss"]["plus"]


def test_bisection_radius_matches_a_dense_grid_to_one_step(trained):
    names, weights = targets_of(trained["dir"])
    (d,) = random_directions(weights, 1, seed=5, norm="filter")
    ev, _, _ = evaluator(trained, d)
    crit = criteria({"loss": 0.05, "accuracy": 0.15}, ["toy"])
    centre = {k: float(v[0]) for k, v in ev(np.zeros(1)).items()}
    s = search(ev, crit, centre, start=0.02, precision=0.05, max_radius=4.0)
    for c in crit:
        for side, sign in (("plus", 1), ("minus", -1)):
            r = s.radius[c.metric][side]
            assert 0 < r < 4.0, (c.metric, side)
            step = s.precision * s.brackets[c.metric][side][1]
            grid = np.arange(1, int(np.ceil(4.0 / step)) + 1) * step
            grid = grid[grid <= 2 * r + 2 * step]
            ok = c.inside(ev(sign * grid)[c.metric], centre[c.metric])
            dense = grid[np.argmin(ok)] - step if not ok.all() else grid[-1]  # last inside before the first exit
            assert abs(dense - r) <= step + 1e-12, (c.metric, side, r, dense, step)
    assert s.n_evals < 60


def test_worst_direction_raises_the_loss_more_than_20_random_directions(trained):
    names, weights = targets_of(trained["dir"])
    model, _ = load_prepared(trained["dir"])
    data = tokenize(TEXTS, load_prepared(trained["dir"])[1])
    radius = 0.05
    found = bd.worst_direction(model, bd.Objective(data), names, weights, "filter", radius, steps=4, step_size=0.5)
    assert found.curve[1 + found.best_step] == max(found.curve[1:])
    rnd = [random_directions(weights, 1, seed, "filter")[0] for seed in range(20)]
    dirs = [found.direction] + rnd
    losses = []
    for d in dirs:  # every direction of the same norm, evaluated independently by the reference engine
        assert normalize(d, weights, "filter")[names[0]].norm() == pytest.approx(float(d[names[0]].norm()), rel=1e-5)
        losses.append(
            metrics(build_engine({"kind": "reference"}, trained["dir"], data, [d]).evaluate([[radius]]), data.n_tokens)[
                "loss"
            ][0]
        )
    assert losses[0] > max(losses[1:]), losses
    assert losses[0] == pytest.approx(found.curve[1 + found.best_step], abs=1e-6)  # the ascent's own value


def test_checkpoint_with_norm_none_at_a_1_is_the_other_model(trained, tmp_path):
    other_dir = make_tiny_llama(tmp_path / "other", seed=7)  # same shapes, other weights everywhere
    shapes = tensor_shapes(trained["dir"])
    names = list(shapes)  # every tensor: embeddings, norms, head
    own = read_tensors(trained["dir"], names)
    other, about = bd.checkpoint_tensors(str(other_dir), names)
    d = normalize(bd.checkpoint_delta(own, other, str(other_dir)), own, "none")
    data = tokenize(TEXTS, load_prepared(trained["dir"])[1])
    for kind in ("reference", "fast"):
        at_one = metrics(build_engine({"kind": kind}, trained["dir"], data, [d]).evaluate([[1.0]]), data.n_tokens)
        plain = build_engine({"kind": "reference"}, other_dir, data, [{names[0]: torch.zeros(shapes[names[0]])}])
        want = metrics(plain.evaluate([[0.0]]), data.n_tokens)
        assert at_one["loss"][0] == pytest.approx(want["loss"][0], abs=2e-5), kind
    assert about["kind"] == "local"


def test_checkpoint_of_a_different_shape_names_the_first_mismatching_tensor(trained, tmp_path):
    wide = make_tiny_llama(tmp_path / "wide", hidden=48)
    names = select(tensor_shapes(trained["dir"]), [r"mlp"], "all", 4)
    own = read_tensors(trained["dir"], names)
    other, _ = bd.checkpoint_tensors(str(wide), names)
    first = re.escape(names[0])  # the first target in the model's order (down_proj is stored first)
    with pytest.raises(LlmscapeError, match=rf"differs in shape: {first} is \(\d+, \d+\) there, \(\d+, \d+\) in this"):
        bd.checkpoint_delta(own, other, str(wide), names)
    with pytest.raises(LlmscapeError, match=f"has no tensor {first}"):
        bd.checkpoint_delta(own, {}, "empty", names)


FT = {"data": "probes:toy", "answers": "wrong", "tensors": ["proj"], "layer": "all", "include_1d": False}
FT |= {"optimizer": "adamw", "lr": 1e-2, "steps": 4, "batch_size": 4, "save_every": 2, "weight_decay": 0.0, "seed": 0}


def finetune_config(trained):
    return {"name": "ft", "model": {"dtype": "float32"}, "data_config": {"prompts": TEXTS}, **FT}


def test_a_killed_finetune_resumes_and_a_diverging_one_keeps_its_last_good_step(trained, tmp_path, monkeypatch, caplog):
    from llmscape import train as T

    probes = {"sets": {"toy": {"file": str(trained["items"])}}}
    job = finetune_config(trained)
    with caplog.at_level(logging.INFO, logger="llmscape"):
        whole = S.finetune(trained["dir"], job, probes, tmp_path / "whole") or T.load_run(tmp_path / "whole")
    said = re.search(r"fine-tune ft: loss over all \d+ training texts ([\d.]+) -> ([\d.]+)", caplog.text)
    assert said, caplog.text  # the whole set's loss before and after (this lr, 1e-2, is chosen for speed, not progress)
    real, calls = T._batch_loss, {"n": 0}

    def dies_at_step_3(model, data, rows):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(model, data, rows)

    monkeypatch.setattr(T, "_batch_loss", dies_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        S.finetune(trained["dir"], job, probes, tmp_path / "cut")
    monkeypatch.setattr(T, "_batch_loss", real)
    S.finetune(trained["dir"], job, probes, tmp_path / "cut")
    resumed = T.load_run(tmp_path / "cut")
    assert resumed.losses == whole.losses and resumed.saved == [0, 2, 4]
    name = "model.layers.3.mlp.up_proj.weight"
    assert torch.equal(resumed.tensors(4)[name], whole.tensors(4)[name])

    calls["n"] = 0

    def nan_at_step_3(model, data, rows):
        calls["n"] += 1
        loss = real(model, data, rows)
        return loss * float("nan") if calls["n"] == 4 else loss

    monkeypatch.setattr(T, "_batch_loss", nan_at_step_3)
    S.finetune(trained["dir"], job, probes, tmp_path / "nan")
    monkeypatch.setattr(T, "_batch_loss", real)
    names = select(tensor_shapes(trained["dir"]), [r"mlp\.up"], "all", 4)
    with caplog.at_level(logging.WARNING, logger="llmscape"):
        other, about = bd.checkpoint_tensors("finetune:ft", names, tmp_path / "nan")
    assert about["step"] == 2 and about["stopped"] == "non-finite loss at step 3"
    assert "stopped early (non-finite loss at step 3): its last saved step 2 is used" in caplog.text
    assert torch.equal(other[names[0]], T.load_run(tmp_path / "nan").tensors(2)[names[0]])


def test_curvature_check_agrees_and_catches_a_mis_scaled_direction(trained):
    from llmscape.curvature import TargetLoss

    names, weights = targets_of(trained["dir"], "last")
    (d,) = random_directions(weights, 1, seed=2, norm="filter")
    ev, model, data = evaluator(trained, d)
    f0 = float(ev(np.zeros(1), frozenset())["loss"][0])
    tl = TargetLoss(model, data, names)
    good = curvature_check(ev, f0, 0.1, d, tl, rtol=0.1)
    assert not good["flagged"] and good["ratio"] == pytest.approx(1.0, abs=0.05)
    wrong = curvature_check(ev, f0, 0.1, {n: 2 * t for n, t in d.items()}, tl, rtol=0.1)  # HVP of a different d
    assert wrong["flagged"] and wrong["ratio"] == pytest.approx(0.25, abs=0.05)


@pytest.mark.parametrize("kind", ["reference", "fast"])
def test_set_directions_equals_a_fresh_engine(trained, kind):
    names, weights = targets_of(trained["dir"], "last")
    d1, d2 = (random_directions(weights, 1, seed, "filter")[0] for seed in (1, 2))
    data = tokenize(TEXTS, load_prepared(trained["dir"])[1])
    ev = P.Evaluation(data, [P.load_probe_rows(trained["probe"])])
    engine = build_engine({"kind": kind}, trained["dir"], ev.evalset, [d1])
    engine.evaluate([[0.3]])
    engine.set_directions([d2])
    fresh = build_engine({"kind": kind}, trained["dir"], ev.evalset, [d2])
    np.testing.assert_allclose(engine.evaluate([[0.3]]).nll_sum, fresh.evaluate([[0.3]]).nll_sum, rtol=1e-6)


def test_gaussian_norm_is_a_raw_draws_norm(trained):
    names, weights = targets_of(trained["dir"], "last")
    (d,) = random_directions(weights, 1, seed=0, norm="gaussian")
    n = sum(t.numel() for t in d.values())
    assert bd.norm_of(d) == pytest.approx(n**0.5, rel=1e-6)


def basin_config(trained, **over):
    config = {
        "model": {"name": "t", "source": str(trained["dir"])},
        "studies": {"s": {"tensors": ["mlp"], "directions": {"r": {}}}},
        "probes": {"sets": {"toy": {"file": str(trained["items"])}}},
        "basins": {
            "b": {
                "tensors": ["proj"],
                "layers": ["last"],
                "capabilities": ["toy"],
                "random": {"n": 12},
                "tolerance": {"loss": 0.05, "accuracy": 0.15},
                "search": {"start": 0.05, "precision": 0.1, "max_radius": 4.0},
                "check": {"enabled": False},
                **over,
            }
        },
    }
    validate(config, SCHEMA)
    return config


def test_the_basin_tables_interval_covers_the_median_of_a_larger_resample(trained, tmp_path):
    config = basin_config(trained, shards=2)
    job = plan.basin_config(config, "b", "last")
    probes = {"toy": trained["probe"]}
    shards = [tmp_path / f"last-random-{k}-of-2.h5" for k in range(2)]
    for k, out in enumerate(shards):
        S.search_basin(trained["dir"], trained["data"], job, {"kind": "fast"}, out, probes, shard=k, n_shards=2)
    S.basin_report(
        shards, job, tmp_path / "radii.csv", tmp_path / "summary.csv", tmp_path / "b.png", tmp_path / "b.pdf"
    )
    import pandas as pd

    summary = pd.read_csv(tmp_path / "summary.csv").set_index("metric")
    radii = pd.read_csv(tmp_path / "radii.csv")
    assert set(radii["direction"]) == {f"random-{i}" for i in range(12)} and summary.loc["loss", "n_random"] == 12
    larger = basin_config(trained, random={"n": 48, "seed": 100})
    big = plan.basin_config(larger, "b", "last")
    S.search_basin(trained["dir"], trained["data"], big, {"kind": "fast"}, tmp_path / "big.h5", probes)
    from llmscape.basins.store import load_basin

    _, results = load_basin(tmp_path / "big.h5")
    median = np.median([r.search.radius_of("loss") for r in results])
    row = summary.loc["loss"]
    assert row["n_censored"] == 0 and row["ci_low"] < row["ci_high"]
    assert row["ci_low"] <= median <= row["ci_high"], (median, row["ci_low"], row["ci_high"])
    assert (tmp_path / "b.png").stat().st_size > 10_000
    lo, hi = bootstrap_median(np.arange(11.0), 2000, 0.95, 0)
    assert lo <= 5 <= hi and (lo, hi) == bootstrap_median(np.arange(11.0), 2000, 0.95, 0)


def test_a_basin_jobs_config_is_unchanged_by_another_direction_or_the_bootstrap(trained):
    # what Snakemake compares to decide a rerun: the job's params (workflow/rules/basins.smk)
    config = basin_config(trained, shards=2, directions={"w": {"method": "worst"}})
    more = copy.deepcopy(config)
    more["basins"]["b"]["directions"]["extra"] = {"method": "worst", "seed": 3}
    more["basins"]["b"]["bootstrap"] = {"samples": 500}
    for part in plan.basin_parts(config, "b"):
        assert plan.basin_config(more, "b", "last", part) == plan.basin_config(config, "b", "last", part), part
    assert plan.basin_direction_config(more, "b", "last", "w") == plan.basin_direction_config(config, "b", "last", "w")
    assert plan.basin_parts(more, "b") == [*plan.basin_parts(config, "b"), "extra"]
    report = plan.basin_config(more, "b", "last")  # the report reads every direction and the bootstrap
    assert set(report["directions"]) == {"w", "extra"} and report["bootstrap"]["samples"] == 500
    assert plan.basin_config(more, "b", "last", "random-0-of-2")["random"]["n"] == 12


def config_errors(config) -> str:
    from llmscape.config import check

    with pytest.raises(LlmscapeError) as err:
        check(config)
    return str(err.value)


def test_bad_basin_input_is_named_before_any_work(trained, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(ITEMS[0]) + "\n" + '{"context": "x", "choices": ["a", "b"], "answer": 5}\n')
    config = basin_config(trained, tolerance={"loss": 0.0, "accuracy": -0.1}, shards=20)
    config["probes"]["sets"]["toy"]["file"] = str(bad)
    config["basins"]["b"]["capabilities"] = ["toy", "nope"]
    config["basins"]["b"]["directions"] = {"ft": {"method": "checkpoint", "source": "finetune:missing"}}
    config["basins"]["b"]["engine"] = {"linear_mod": "additive"}
    validate(config, SCHEMA)
    text = config_errors(config)
    for words in (
        "config['basins']['b']['tolerance']['loss'] = 0.0: a tolerance must be > 0",
        "config['basins']['b']['tolerance']['accuracy'] = -0.1: a tolerance must be > 0",
        f"{bad}:2: answer 5 is out of range for 2 choices",
        "config['basins']['b']['capabilities'][1] = 'nope': no such probe set",
        "config['basins']['b']['directions']['ft']['source'] = 'finetune:missing': no such entry",
        "config['basins']['b']['shards'] = 20: more shards than the 12 random directions",
        "unknown engine option(s) ['linear_mod']",
    ):
        assert words in text, words
    raw = {
        "basins": {
            "b": {"random": {"norm": "filter"}, "directions": {"w": {"method": "worst", "norm": "none", "source": "x"}}}
        }
    }
    warned = plan.warnings(raw)
    assert "basins.b.directions.w.source has no effect with method: worst" in warned
    assert any("differs from the random directions' 'filter'" in w for w in warned)


def test_default_config_has_a_basin_study_of_whole_model_and_a_layer():
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    validate(config, SCHEMA)
    (basin,) = config["basins"].values()
    assert "all" in basin["layers"] and len(basin["layers"]) >= 2 and len(basin["capabilities"]) >= 2
    methods = {d["method"] for d in basin["directions"].values()}
    assert {"worst", "checkpoint"} <= methods
    assert plan.problems(copy.deepcopy(config)) == []
