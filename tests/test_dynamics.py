"""The training-dynamics study on a tiny random Llama: slices, projections, PCA points, resume, bad input, report."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import jinja2
import numpy as np
import pandas as pd
import pytest
import torch
from workflow_helpers import ROOT

from llmscape import train as T
from llmscape.data import load_eval_set
from llmscape.directions import load_directions
from llmscape.dynamics import geometry
from llmscape.dynamics import report as R
from llmscape.dynamics import settings as S
from llmscape.dynamics import steps as D
from llmscape.dynamics.corpus import find_corpus, locate
from llmscape.engine.reference import ReferenceEngine
from llmscape.errors import LlmscapeError
from llmscape.loss import metrics
from llmscape.models import load_prepared, prepare_model
from llmscape.steps import make_directions
from llmscape.store import Landscape, merge

SCHEMA = str(ROOT / "workflow/schemas/config.schema.yaml")
ENGINE = {"kind": "fast", "checkpoint_s": 0}
DYNAMICS = {
    "enabled": True,
    "train": {"optimizer": "adamw", "lr": 0.02, "steps": 4, "save_every": 2},
    "grid": {"min": -0.5, "max": 0.5, "points": 5},
    "pca": {"points": 5},
    "corpus": {"seq_len": 16, "max_sequences": 3},
    "next_token": {"prompt": "The capital", "top_k": 3, "alphas": [-0.5, 0.5]},
    "curvature": {"max_iter": 8, "trace_probes": 2},
}


def config_for(tiny_dir, **dynamics) -> dict:
    """A validated config (schema defaults filled in) with a dynamics section on the tiny model."""
    from snakemake.utils import validate

    section = copy.deepcopy(DYNAMICS)
    for key, value in dynamics.items():
        section[key] = {**section.get(key, {}), **value} if isinstance(value, dict) else value
    config = {
        "model": {"name": "tiny", "source": str(tiny_dir)},
        "studies": {"s": {"tensors": ["mlp"], "directions": {"r": {}}}},
        "dynamics": section,
    }
    validate(config, SCHEMA)
    return config


def prepare(tiny_dir, out: Path, config: dict) -> SimpleNamespace:
    corpus = find_corpus(config["dynamics"]["corpus"]["sources"])
    paths = {name: out / f"data/{name}.h5" for name in S.DATASETS}
    D.prepare_datasets(
        tiny_dir, S.data_config(config, "phrase"), S.data_config(config, "corpus", corpus), *paths.values()
    )
    make_directions(tiny_dir, paths["phrase"], S.job_config(config, "directions"), out / "directions.h5")
    return SimpleNamespace(out=out, config=config, data=paths, directions=out / "directions.h5")


@pytest.fixture(scope="module")
def model_dir(tiny_dir, tmp_path_factory):
    """The tiny Llama prepared as the workflow prepares a model (safetensors + manifest)."""
    out = tmp_path_factory.mktemp("prepared") / "model"
    prepare_model(str(tiny_dir), out)
    return out


@pytest.fixture(scope="module")
def study(model_dir, tmp_path_factory):
    """Data, directions, a 4-step run saving 0, 2, 4, and its trajectory file, computed once."""
    s = prepare(model_dir, tmp_path_factory.mktemp("dynamics"), config_for(model_dir))
    s.run = D.train_run(model_dir, s.data["phrase"], S.job_config(s.config, "train"), s.out / "run")
    s.trajectory = s.out / "trajectory.h5"
    s.pca_directions = s.out / "pca-directions.h5"
    D.trajectory(
        model_dir, s.data, s.directions, s.out / "run", S.job_config(s.config, "trajectory"), ENGINE, s.trajectory,
        s.pca_directions,
    )  # fmt: skip
    return s


def flat(tensors: dict) -> torch.Tensor:
    return torch.cat([tensors[n].double().reshape(-1) for n in sorted(tensors)])


def test_the_centre_of_each_re_centred_slice_is_the_training_logs_loss(study, model_dir):
    run = study.run
    assert run.saved == [0, 2, 4] and run.stopped is None and len(run.losses) == 4
    for step in run.saved:
        path = study.out / f"slices/phrase/step-{step}/shard-0-of-1.h5"
        D.compute_slice(
            model_dir, study.data["phrase"], study.directions, run.path, step, S.job_config(study.config, "slice"),
            ENGINE, path,
        )  # fmt: skip
        ls = Landscape.load(path)
        assert ls.computed.all() and ls.attrs["provenance"]["step"] == step
        engine = ls.attrs["provenance"]["engine"]  # theta_t in memory, still the prefix trick: layers 3.. only
        assert (engine["path"], engine["start_layer"]) == ("layers", 3)
        centre = ls.loss[2, 2]  # a = b = 0 on the 5-point grid over [-0.5, 0.5]
        if step < len(run.losses):  # the log holds the loss before each update, the batch being the whole phrase
            assert centre == pytest.approx(run.losses[step], abs=1e-6)
    assert centre < run.losses[0] - 1e-3  # the run lowered the loss


def test_the_trajectorys_projected_losses_are_computed_at_the_stated_points(study, model_dir):
    t = D.load_trajectory(study.trajectory)
    run, steps = study.run, [int(s) for s in t["steps"]]
    assert steps == run.saved and list(t["train_loss"]) == pytest.approx(run.losses, abs=0)
    (d, e), _ = load_directions(study.directions)
    u, recipe = load_directions(study.pca_directions)
    assert recipe["recipe"]["method"] == "pca" and recipe["recipe"]["origin_step"] == steps[-1]
    thetas = {s: run.tensors(s) for s in steps}
    data = load_eval_set(study.data["phrase"])
    model, _ = load_prepared(model_dir)

    def loss_at(origin: dict, directions: list, coeffs) -> float:
        """The reference engine (weights written per point) around ``origin``."""
        D.set_tensors(model, origin)
        engine = ReferenceEngine(model, data, directions)
        return float(metrics(engine.evaluate(np.atleast_2d(coeffs)), data.n_tokens)["loss"][0])

    plane = torch.stack([flat(d), flat(e)], dim=1)
    for i, s in enumerate(steps):
        delta = flat(thetas[s]) - flat(thetas[0])
        # the stated coordinates are the least-squares projection onto span(d, e) ...
        coords = torch.linalg.lstsq(plane, delta.unsqueeze(1)).solution.squeeze(1).numpy()
        np.testing.assert_allclose(t["fixed/coords"][i], coords, rtol=1e-6, atol=1e-9)
        # ... and the loss reported there is the loss at theta_0 + a d + b e, at theta_t the true one
        assert t["fixed/loss/phrase"][i] == pytest.approx(loss_at(thetas[0], [d, e], coords), abs=1e-5)
        assert t["loss/phrase"][i] == pytest.approx(loss_at(thetas[s], [d, e], [0.0, 0.0]), abs=1e-5)
        # the PCA plane: coordinates of theta_t - theta_T along the unit components, loss at theta_T + sum c u
        m = flat(thetas[s]) - flat(thetas[steps[-1]])
        np.testing.assert_allclose(t["pca/coords"][i], [float(m @ flat(c)) for c in u], rtol=1e-5, atol=1e-7)
        assert t["pca/loss"][i] == pytest.approx(loss_at(thetas[steps[-1]], u, t["pca/coords"][i]), abs=1e-5)
    assert np.isnan(t["fixed/outside_fraction"][0]) and (t["fixed/outside_fraction"][1:] > 0.5).all()
    # the next-token table: theta* (step 0) first, each saved step, then theta* + a d
    assert list(t["next_token/settings"]) == ["step 0 (θ*)", "step 2", "step 4", "θ* + -0.5·d", "θ* + 0.5·d"]
    probs = t["next_token/probabilities"]
    assert probs.shape == (5, 3) and (np.diff(probs, axis=1) <= 0).all() and (probs.sum(axis=1) <= 1 + 1e-9).all()


def test_a_killed_training_run_resumes_at_its_saved_step_with_identical_later_steps(model_dir, tmp_path, monkeypatch):
    config = config_for(model_dir, train={"steps": 6, "save_every": 2, "batch_size": 2})
    s = prepare(model_dir, tmp_path, config)
    job = S.job_config(config, "train")
    whole = D.train_run(model_dir, s.data["corpus"], job, tmp_path / "whole")  # 3 windows in batches of 2
    real, calls = T._batch_loss, {"n": 0}

    def dies_at_step_5(model, data, rows):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real(model, data, rows)

    monkeypatch.setattr(T, "_batch_loss", dies_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        D.train_run(model_dir, s.data["corpus"], job, tmp_path / "cut")
    partial = tmp_path / "cut.partial"
    assert not (tmp_path / "cut").exists() and json.loads((partial / "history.json").read_text())["saved"][-1] == 4
    monkeypatch.setattr(T, "_batch_loss", real)
    kept = {p.name: p.read_bytes() for p in partial.iterdir()}

    # another job's partial run (other data) is not resumed: discarded, and the run starts from step 0
    def killed_at_once(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(T, "_batch_loss", killed_at_once)
    with pytest.raises(KeyboardInterrupt):
        D.train_run(model_dir, s.data["phrase"], job, tmp_path / "cut")
    assert sorted(p.name for p in partial.iterdir()) == ["history.json", "state.pt", "step-000000.safetensors"]
    for name, content in kept.items():  # put the killed corpus run back
        (partial / name).write_bytes(content)
    monkeypatch.setattr(T, "_batch_loss", real)
    resumed = D.train_run(model_dir, s.data["corpus"], job, tmp_path / "cut")
    assert resumed.saved == whole.saved == [0, 2, 4, 6] and resumed.losses == whole.losses
    for step in whole.saved:
        for name, tensor in whole.tensors(step).items():
            assert torch.equal(resumed.tensors(step)[name], tensor)


def test_report_tables_figures_and_the_papers_section(study, model_dir, tmp_path):
    run, out = study.run, study.out
    slices = []
    for data in S.DATASETS:
        for step in S.slice_steps(study.config["dynamics"], data, run.saved):
            shard = out / f"slices/{data}/step-{step}/shard-0-of-1.h5"
            if not shard.exists():
                D.compute_slice(
                    model_dir, study.data[data], study.directions, run.path, step,
                    S.job_config(study.config, "slice"), ENGINE, shard,
                )  # fmt: skip
            slices.append(out / f"slices/{data}/step-{step}.h5")
            merge([shard]).save(slices[-1])
    corpus_slices = [p.relative_to(out).as_posix() for p in slices[-2:]]
    assert corpus_slices == ["slices/corpus/step-0.h5", "slices/corpus/step-4.h5"]
    D.compute_pca_slice(
        model_dir, study.data["phrase"], study.pca_directions, study.trajectory, run.path,
        S.job_config(study.config, "pca_slice"), ENGINE, out / "pca/shard-0-of-1.h5",
    )  # fmt: skip
    merge([out / "pca/shard-0-of-1.h5"]).save(out / "pca.h5")
    pca = Landscape.load(out / "pca.h5")
    reach = np.abs(D.load_trajectory(study.trajectory)["pca/coords"]).max(axis=0) * 1.25
    np.testing.assert_allclose([a[-1] for a in pca.axes], reach)  # the grid covers the path with the margin
    spectrum = out / "spectra/step-4.h5"
    D.spectrum_at(model_dir, study.data["phrase"], run.path, 4, S.job_config(study.config, "spectrum"), spectrum)

    tables = {k: tmp_path / f"tables/{k}.csv" for k in ("steps", "roughness", "next_token")}
    figures = {f"{n}_{x}": tmp_path / f"figures/{n}.{x}" for n in R.FIGURES for x in ("png", "pdf")}
    figures["slices_html"] = tmp_path / "figures/slices.html"
    R.make_report(study.trajectory, slices, out / "pca.h5", [spectrum], tables, figures, clip=10.0)
    steps = pd.read_csv(tables["steps"])
    assert list(steps.step) == [0, 2, 4] and steps.lambda_max.isna().tolist() == [True, True, False]
    rough = pd.read_csv(tables["roughness"])
    assert len(rough) == 3 + 2 + 1 and rough.roughness.notna().all() and (rough.local_minima >= 0).all()
    assert len(pd.read_csv(tables["next_token"])) == 5 * 3
    without = R.steps_table(D.load_trajectory(study.trajectory))  # dynamics.curvature.enabled: false
    assert "lambda_max" not in without
    R.plot_sharpness(without, tmp_path / "no-curvature.png", tmp_path / "no-curvature.pdf")
    for path in figures.values():
        assert path.stat().st_size > 1000
    assert 'class="slider"' in figures["slices_html"].read_text() or "sliders" in figures["slices_html"].read_text()

    inputs = {f"dynamics.{k}": v for k, v in {**tables, **figures}.items()} | {"dynamics.trajectory": study.trajectory}
    context = R.paper_context(inputs, tmp_path / "paper")
    assert context["animation"] == "../figures/slices.html" and [p["step"] for p in context["pairs"]] == [0, 4]
    assert context["corpus_source"] == str(find_corpus(study.config["dynamics"]["corpus"]["sources"]))
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROOT / "paper"), undefined=jinja2.StrictUndefined)
    # the section reads the paper's claims table when there is one (claims=None: a config without the claims rule)
    section = env.get_template("sections/dynamics.md.j2")
    text = section.render(config=study.config | {"results": "r"}, dynamics=context, claims=None)
    assert "## Training dynamics" in text and "fraction" in text and "Trajectory PCA" in text
    assert 'So on this grid the claim "the corpus-averaged landscape is smoother" is' in text
    verdict = {"by_id": {"corpus-smoother": {"verdict": "holds"}}}
    assert 'smoother" **holds**' in section.render(
        config=study.config | {"results": "r"}, dynamics=context, claims=verdict
    )
    assert section.render(config={}, dynamics=None, claims=None).strip() == ""


def test_a_phrase_of_one_token_is_refused_naming_the_key(model_dir, tmp_path):
    config = config_for(model_dir, phrase="P")  # one character: one token for the tiny tokenizer
    corpus = find_corpus(config["dynamics"]["corpus"]["sources"])
    with pytest.raises(LlmscapeError, match=r"config\['dynamics'\]\['phrase'\] = 'P' is 1 token"):
        D.prepare_datasets(
            model_dir, S.data_config(config, "phrase"), S.data_config(config, "corpus", corpus),
            tmp_path / "p.h5", tmp_path / "c.h5",
        )  # fmt: skip
    assert not (tmp_path / "p.h5").exists()


def test_a_diverging_run_keeps_its_steps_says_so_and_the_trajectory_names_why(model_dir, tmp_path, monkeypatch, caplog):
    config = config_for(model_dir, train={"steps": 6, "save_every": 2})
    s = prepare(model_dir, tmp_path, config)
    real, calls = T._batch_loss, {"n": 0}

    def nan_at_step_3(model, data, rows):
        calls["n"] += 1
        return real(model, data, rows) * (float("nan") if calls["n"] == 4 else 1.0)

    monkeypatch.setattr(T, "_batch_loss", nan_at_step_3)
    run = D.train_run(model_dir, s.data["phrase"], S.job_config(config, "train"), tmp_path / "run")
    assert run.stopped == "non-finite loss at step 3" and run.saved == [0, 2]
    assert "non-finite loss at step 3; saved steps [0, 2] are kept" in caplog.text
    with pytest.raises(LlmscapeError, match=r"saved steps \[0, 2\] only \(non-finite loss at step 3\).*lower"):
        D.trajectory(
            model_dir, s.data, s.directions, run.path, S.job_config(config, "trajectory"), ENGINE,
            tmp_path / "t.h5", tmp_path / "p.h5",
        )  # fmt: skip
    assert not (tmp_path / "t.h5").exists()


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"train": {"steps": 4, "save_every": 5}}, "['train']['save_every'] = 5: larger than steps = 4"),
        ({"train": {"steps": 4, "save_every": 4}}, "saves steps [0, 4]; trajectory PCA needs at least 3"),
        ({"corpus": {"sources": ["/nonexistent/text", "package:nosuchdist:R"]}}, "/nonexistent/text (no such file)"),
        ({"corpus": {"sources": ["package:transformers:NOPE.md"]}}, "ships no file 'NOPE.md'"),
        ({"grid": {"min": 1.0, "max": -1.0}}, "['grid']: min = 1.0 must be below max = -1.0"),
        ({"tensors": ["("]}, "['tensors'][0] = '(': not a regular expression"),
        ({"shards": 26}, "['shards'] = 26: more shards than the grid's 25 points"),
    ],
)
def test_config_problems_are_named_before_any_job(model_dir, change, expected):
    from llmscape.config import check

    config = config_for(model_dir, **change)
    with pytest.raises(LlmscapeError) as info:
        check(config, cuda_available=False, memory_bytes=2**34)
    assert expected in str(info.value)


def test_schema_and_cross_study_errors(model_dir):
    from llmscape.config import before_defaults, check

    raw = {"model": {"source": str(model_dir)}, "studies": {"s": {"tensors": ["m"], "directions": {"r": {}}}}}
    with pytest.raises(LlmscapeError, match=r"config\['dynamics'\]\['train'\]\['lr'\] = 0: 0 is less than or equal"):
        before_defaults(raw | {"dynamics": {"enabled": True, "train": {"lr": 0}}}, SCHEMA)
    config = config_for(model_dir)
    config["studies"] = {"Dynamics": config["studies"]["s"]}
    with pytest.raises(LlmscapeError, match="a study named 'Dynamics': its files would collide"):
        check(config, cuda_available=False, memory_bytes=2**34)
    assert before_defaults(raw | {"dynamics": {"phrase": "x"}}, SCHEMA) == [
        "dynamics options have no effect without dynamics.enabled: true"
    ]


def test_the_corpus_is_found_where_the_config_says_or_the_error_lists_every_place():
    path, why = locate("package:transformers:LICENSE")
    assert why == "" and path.is_file() and "Apache License" in path.read_text()
    assert find_corpus(["/nonexistent", "package:transformers:LICENSE"]) == path
    with pytest.raises(LlmscapeError) as info:
        find_corpus(["/nonexistent/a", "package:no-such-dist:x", "package:bad"])
    message = str(info.value)
    for part in ("/nonexistent/a (no such file)", "'no-such-dist' is not installed", "package:bad (not of the form"):
        assert part in message


def test_job_configs_hold_only_what_each_job_depends_on(model_dir):
    config = config_for(model_dir)
    assert "next_token" not in S.job_config(config, "slice") and "grid" not in S.job_config(config, "train")
    assert S.job_config(config, "directions")["grid"] == {"dims": 2}
    assert S.slice_steps(config["dynamics"], "corpus", [0, 2, 4]) == [0, 4]
    config["dynamics"]["corpus"]["slices"] = "all"
    assert S.slice_steps(config["dynamics"], "corpus", [0, 2, 4]) == [0, 2, 4]
    assert geometry.roughness(np.zeros((3, 3))) == 0.0
