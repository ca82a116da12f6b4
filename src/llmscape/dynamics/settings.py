"""The config's ``dynamics`` section: what the workflow derives from it, and what it refuses.

Every default lives in the schema (workflow/schemas/config.schema.yaml, ``dynamics``); the
functions here read a validated config and never fill in a default of their own.
"""

from __future__ import annotations

import re

from llmscape.dynamics.corpus import find_corpus
from llmscape.errors import LlmscapeError
from llmscape.study import name_clash
from llmscape.train import TrainSpec

DATASETS = ("phrase", "corpus")
STUDY = "dynamics"  # the name its results are filed under (figures/dynamics/, tables/dynamics/)


def enabled(config: dict) -> bool:
    return bool((config.get("dynamics") or {}).get("enabled"))


def train_spec(section: dict) -> TrainSpec:
    """The training run of a ``dynamics`` section (or of any dict with its ``train`` key)."""
    t = section["train"]
    return TrainSpec(
        steps=t["steps"],
        lr=t["lr"],
        optimizer=t["optimizer"],
        batch_size=t["batch_size"],
        save_every=t["save_every"],
        weight_decay=t["weight_decay"],
        seed=t["seed"],
    )


def slice_steps(section: dict, data: str, saved: list[int]) -> list[int]:
    """The saved steps whose re-centred slice is evaluated on ``data``: every one for the phrase;
    for the corpus every one (``corpus.slices: all``) or the first and the last (``ends``)."""
    if data == "phrase" or section["corpus"]["slices"] == "all":
        return list(saved)
    return sorted({saved[0], saved[-1]})


def data_config(config: dict, name: str, corpus_path: str | None = None) -> dict:
    """The ``data`` section (llmscape.data) of the phrase or the corpus evaluation set."""
    d = config["dynamics"]
    if name == "phrase":
        return {"name": "phrase", "kind": "prompts", "prompts": [d["phrase"]], "seq_len": None, "max_sequences": None}
    c = d["corpus"]
    return {
        "name": "corpus",
        "kind": "files",
        "files": [str(corpus_path)],
        "seq_len": c["seq_len"],
        "max_sequences": c["max_sequences"],
    }


# What each dynamics job's values depend on, beyond the targets (the job's params: changing
# anything else in the section does not rerun it).
JOB_PARTS = {
    "directions": ("direction", "grid"),
    "train": ("train",),
    "slice": ("direction", "grid", "train"),
    "spectrum": ("train", "curvature"),
    "trajectory": ("direction", "train", "pca", "next_token"),
    "pca_slice": ("train", "pca"),
}


def job_config(config: dict, job: str) -> dict:
    """What determines one dynamics job's values (its provenance and its rule's params), in the
    shape of a landscape's job config (llmscape.study.landscape_config), so the library's target
    and direction helpers take it as it is: model, study, layer, tensors, include_1d, and per
    ``JOB_PARTS[job]``: ``direction`` (the fixed plane's recipe), ``grid`` (2-D), ``train`` (with
    the training data's name), ``curvature``, ``pca``, ``next_token``."""
    d = config["dynamics"]
    parts = {
        "direction": {"name": "fixed", "method": "random", **d["directions"]},
        "grid": {"dims": 2, **d["grid"]} if job != "directions" else {"dims": 2},  # directions: 2 axes
        "train": d["train"],
        "curvature": d["curvature"],
        "pca": d["pca"],
        "next_token": d["next_token"],
    }
    return {
        "model": config["model"],
        "study": STUDY,
        "layer": str(d["layer"]),
        "tensors": d["tensors"],
        "include_1d": d["include_1d"],
    } | {k: parts[k] for k in JOB_PARTS[job]}


def problems(config: dict) -> list[str]:
    """What the config alone shows to be wrong with the dynamics section (empty when disabled)."""
    if not enabled(config):
        return []
    d = config["dynamics"]
    key = "config['dynamics']"
    out = []
    t = d["train"]
    if t["save_every"] > t["steps"]:
        out.append(
            f"{key}['train']['save_every'] = {t['save_every']}: larger than steps = {t['steps']}; "
            "steps are saved every save_every steps, so nothing between the first and the last would be"
        )
    elif len(train_spec(d).saved_steps()) < 3:
        out.append(
            f"{key}['train']: steps = {t['steps']} with save_every = {t['save_every']} saves steps "
            f"{train_spec(d).saved_steps()}; trajectory PCA needs at least 3 saved steps"
        )
    for i, pattern in enumerate(d["tensors"]):
        try:
            re.compile(pattern)
        except re.error as exc:
            out.append(f"{key}['tensors'][{i}] = {pattern!r}: not a regular expression ({exc})")
    g = d["grid"]
    if g["min"] >= g["max"]:
        out.append(f"{key}['grid']: min = {g['min']} must be below max = {g['max']}")
    if d["shards"] > d["grid"]["points"] ** 2:
        out.append(f"{key}['shards'] = {d['shards']}: more shards than the grid's {d['grid']['points'] ** 2} points")
    try:
        find_corpus(d["corpus"]["sources"])
    except LlmscapeError as exc:
        out.append(f"{key}['corpus']['sources'] = {d['corpus']['sources']}: {exc}")
    return out + name_clash(config, STUDY, "dynamics study's")


def ineffective(raw: dict) -> list[str]:
    """Dynamics options that do nothing as written (config before defaults)."""
    d = raw.get("dynamics") or {}
    if not d:
        return []
    if not d.get("enabled", False):
        return [] if set(d) <= {"enabled"} else ["dynamics options have no effect without dynamics.enabled: true"]
    out = []
    curvature = d.get("curvature") or {}
    if curvature.get("enabled") is False and len(curvature) > 1:
        out.append("dynamics.curvature options have no effect with enabled: false")
    if (raw.get("engine") or {}).get("stream"):
        out.append("engine.stream has no effect on the dynamics jobs: theta_t is held in memory, not streamed")
    return out
