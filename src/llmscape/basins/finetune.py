"""Short fine-tunes whose delta theta_ft - theta* is a checkpoint direction (Chen et al.'s fine-tuning and
harmful fine-tuning directions), run by the one training routine, llmscape.train.

Training text: the config's evaluation data (``data: data``), or a probe set's items as text
(``data: probes:<set>``): each item's context followed by its right choice (``answers: right``,
a benign fine-tune: more of a capability) or by a wrong one (``answers: wrong``: the choice
after the right one, cyclically; an adversarial fine-tune, training toward wrong answers, or
away from refusals with the refusal set). Chat sets are written under the chat template
(the choice as the start of the assistant's reply). The loss is llmscape.train's: every
next token of the text.

The run checkpoints its trained tensors every ``save_every`` steps (and at the first and
last), resumes after a kill, and stops on a non-finite loss keeping the steps before it
(llmscape.train); the checkpoint direction then uses the last saved step and says so.
"""

from __future__ import annotations

import logging
from pathlib import Path

from llmscape.errors import LlmscapeError

log = logging.getLogger("llmscape")


def training_texts(job_config: dict, probes_section: dict | None, tokenizer) -> tuple[list[str], bool]:
    """The texts a fine-tune trains on (module docstring), and whether they went through the chat template."""
    from llmscape import data as datamod
    from llmscape.probes import probe_specs, read_items

    source = job_config["data"]
    if source == "data":
        return datamod.texts_for(job_config["data_config"], tokenizer)
    if not source.startswith("probes:"):
        raise LlmscapeError(f"finetune {job_config['name']}: data must be 'data' or 'probes:<set>', got {source!r}")
    spec = probe_specs(probes_section)[source.removeprefix("probes:")]
    texts = []
    for item in read_items(spec.path):
        j = item.answer if job_config["answers"] == "right" else (item.answer + 1) % len(item.choices)
        context = datamod.chat_context(tokenizer, item.context) if spec.chat else item.context
        texts.append(context + item.choices[j])
    return texts, spec.chat


def run_finetune(model_dir: str | Path, job_config: dict, probes_section: dict | None, out: str | Path):
    """Fine-tune the model's selected tensors on the training texts; the run directory ``out`` (llmscape.train)."""
    from llmscape import data as datamod
    from llmscape.models import load_prepared, n_layers, tensor_shapes
    from llmscape.targets import select
    from llmscape.train import TrainSpec, mean_loss, train

    model, tokenizer = load_prepared(model_dir, job_config["model"]["dtype"])
    texts, templated = training_texts(job_config, probes_section, tokenizer)
    evalset = datamod.tokenize(texts, tokenizer, templated=templated)
    names = select(
        tensor_shapes(model_dir),
        job_config["tensors"],
        job_config["layer"],
        n_layers(model_dir),
        job_config["include_1d"],
    )
    steps = job_config["steps"]
    spec = TrainSpec(
        steps=steps,
        lr=job_config["lr"],
        optimizer=job_config["optimizer"],
        batch_size=job_config["batch_size"],
        save_every=job_config["save_every"] or steps,
        weight_decay=job_config["weight_decay"],
        seed=job_config["seed"],
    )
    log.info(
        "fine-tune %s: %d texts (%s), %d tensors, %s lr %g, %d steps",
        job_config["name"],
        len(texts),
        job_config["data"],
        len(names),
        spec.optimizer,
        spec.lr,
        steps,
    )
    before = mean_loss(model, evalset, spec.batch_size)
    run = train(model, evalset, names, spec, out)
    if run.stopped:
        log.warning("fine-tune %s: %s; last saved step %d", job_config["name"], run.stopped, run.saved[-1])
    else:  # each step's loss is its own batch's; the whole set's, before and after, shows what training did
        log.info(
            "fine-tune %s: loss over all %d training texts %.4f -> %.4f",
            job_config["name"],
            len(texts),
            before,
            mean_loss(model, evalset, spec.batch_size),
        )
    return run
