"""Capabilities as multiple-choice probe sets, scored by log-likelihood in the same pass as the loss.

A probe set is a JSONL file, one item per line::

    {"context": "The capital of France is", "choices": [" Paris", " Rome", " Madrid"], "answer": 0}

``context`` a non-empty string, ``choices`` two or more distinct non-empty strings (usually
starting with a space: they continue the context), ``answer`` the index of the right one;
an optional ``meta`` value is kept but not used. Blank lines are skipped. Built-in sets
(``BUILTIN``, authored for this repository, in ``llmscape/probe_sets/``) and a user's own
files (config ``probes.sets``) are read the same way; a malformed line is an error naming
the file and line.

Scoring follows lm-evaluation-harness's multiple-choice conventions. With ll_j the summed
log-probability of choice j's tokens given the context,

    accuracy       = mean over items of [argmax_j ll_j == answer]
    accuracy_norm  = mean over items of [argmax_j ll_j / len(choice_j) == answer]   (characters: lm-eval's acc_norm)
    logprob        = mean over items of ll_answer                                   (nats)
    chance         = mean over items of 1 / n_choices

An item counts as right only when its right choice has a finite log-likelihood (an
overflowed point never scores by accident); ties go to the first choice, as numpy's argmax.

Tokenization is lm-eval's ``_encode_pair``: trailing whitespace of the context moves into
the choice, ``context`` and ``context + choice`` are tokenized whole (``add_special_tokens``
as the evaluation set does) and the choice's tokens are the whole's after the context's.
With ``chat`` (instruct models), the context is the user turn of a one-turn conversation
under the model's own chat template with its generation prompt
(``tokenizer.apply_chat_template``), tokenized without adding special tokens (the template
holds them), and the choice is the start of the assistant's reply.

Shared contexts are computed once. Scoring choice tokens c_1..c_m needs the model's
outputs at the positions of context + c_1..c_{m-1}; each item gets one row per maximal such
prefix, and every choice token is a target (llmscape.data.Targets) at its position in a row
holding its prefix, summed into one column per choice. All single-token choices of an item
share one row (the context alone), and choices that share leading tokens share rows, so an
item costs about one context's forward pass instead of one per choice. The rows are
appended to the loss's evaluation set (``Evaluation``), so every engine computes the loss and
every capability at every grid point in one batched pass.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import h5py
import numpy as np
import torch

from llmscape import h5io
from llmscape.data import EvalSet, Targets, chat_context
from llmscape.errors import LlmscapeError
from llmscape.loss import SequenceStats, metrics

log = logging.getLogger("llmscape")

# Built-in probe sets: name -> whether it is scored under the chat template, and what it probes.
BUILTIN = {
    "capitals": (False, "facts: the capital city of a country (3 choices)"),
    "arithmetic": (False, "one- and two-digit addition and subtraction (3 choices)"),
    "grammar": (False, "English grammar minimal pairs: agreement, tense, pronoun case (2 choices)"),
    "code": (False, "Python code completion: the token that makes the snippet right (3 choices)"),
    "refusal": (True, "refusal preference under the chat template: refuse harmful requests, help with benign ones"),
}
METRICS = ("accuracy", "accuracy_norm", "logprob")
KEYS = ("context", "choices", "answer", "meta")
MAX_PROBLEMS = 10


@dataclass(frozen=True)
class ProbeItem:
    context: str
    choices: tuple[str, ...]
    answer: int
    line: int  # 1-based line in its file


@dataclass(frozen=True)
class ProbeSpec:
    """Where a probe set comes from: its file, whether the chat template applies, what it probes."""

    name: str
    path: Path
    chat: bool
    description: str = ""
    max_items: int | None = None  # this set's own limit (None: the probes section's max_items)


def builtin_path(name: str) -> Path:
    return Path(str(resources.files("llmscape") / "probe_sets" / f"{name}.jsonl"))


def probe_specs(probes_section: dict | None) -> dict[str, ProbeSpec]:
    """Every probe set a config can name: the built-in ones, then the config's ``probes.sets``.

    An entry with a ``file`` is a set of its own (replacing a built-in of that name); an entry
    without one adjusts the built-in set of its name (``chat``, ``max_items``)."""
    specs = {name: ProbeSpec(name, builtin_path(name), chat, text) for name, (chat, text) in BUILTIN.items()}
    for name, s in ((probes_section or {}).get("sets") or {}).items():
        base = None if s.get("file") else specs.get(name)
        if s.get("file") is None and base is None:
            raise LlmscapeError(f"probe set {name!r} has no file and is not a built-in set ({', '.join(BUILTIN)})")
        chat = s.get("chat")
        specs[name] = ProbeSpec(
            name,
            Path(s["file"]) if s.get("file") else base.path,
            bool(chat) if chat is not None else (base.chat if base else False),
            s.get("description") or (base.description if base else ""),
            s.get("max_items"),
        )
    return specs


def read_items(path: str | Path) -> list[ProbeItem]:
    """The items of a JSONL probe file; every problem (up to ``MAX_PROBLEMS``) named by file and line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise LlmscapeError(f"probe set {path}: cannot read it ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise LlmscapeError(f"probe set {path}: not UTF-8 text ({exc})") from exc
    items, problems = [], []
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        where = f"{path}:{number}"
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            problems.append(f"{where}: not a JSON object ({exc.msg} at column {exc.colno})")
            continue
        item, why = _item(obj, number)
        if why:
            problems.append(f"{where}: {why}")
        else:
            items.append(item)
    if not items and not problems:
        problems.append(f"{path}: no items (one JSON object per line)")
    if problems:
        more = f"\n  ... and {len(problems) - MAX_PROBLEMS} more" if len(problems) > MAX_PROBLEMS else ""
        raise LlmscapeError("invalid probe set:\n  " + "\n  ".join(problems[:MAX_PROBLEMS]) + more)
    return items


def _item(obj, line: int) -> tuple[ProbeItem | None, str | None]:
    if not isinstance(obj, dict):
        return None, f"expected an object with keys context, choices, answer, got {type(obj).__name__}"
    unknown = sorted(set(obj) - set(KEYS))
    if unknown:
        return None, f"unknown key(s) {unknown}; an item has {list(KEYS[:3])} and optionally 'meta'"
    missing = [k for k in KEYS[:3] if k not in obj]
    if missing:
        return None, f"missing key(s) {missing}"
    context, choices, answer = obj["context"], obj["choices"], obj["answer"]
    if not isinstance(context, str) or not context.strip():
        return None, f"context must be a non-empty string, got {context!r}"
    if not isinstance(choices, list) or len(choices) < 2:
        return None, f"choices must be a list of at least 2 strings, got {choices!r}"
    if not all(isinstance(c, str) and c for c in choices):
        return None, f"every choice must be a non-empty string, got {choices!r}"
    if len(set(choices)) < len(choices):
        return None, f"choices repeat: {choices!r}"
    if isinstance(answer, bool) or not isinstance(answer, int):
        return None, f"answer must be an integer index into choices, got {answer!r}"
    if not 0 <= answer < len(choices):
        return None, f"answer {answer} is out of range for {len(choices)} choices (0..{len(choices) - 1})"
    return ProbeItem(context, tuple(choices), answer, line), None


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------ rows


@dataclass
class ProbeRows:
    """A tokenized probe set: rows with targets (one column per choice) and the item bookkeeping."""

    name: str
    chat: bool
    rows: EvalSet  # targets: every choice token, column = the choice's index over all items' choices
    column_item: np.ndarray  # [C] item of each column
    column_choice: np.ndarray  # [C] choice index within its item
    column_chars: np.ndarray  # [C] characters of the choice (accuracy_norm)
    answer: np.ndarray  # [I]
    n_choices: np.ndarray  # [I]
    lines: np.ndarray  # [I] line in the source file
    contexts: list[str]
    choices: list[list[str]]
    attrs: dict = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return len(self.answer)

    @property
    def chance(self) -> float:
        return float(np.mean(1.0 / self.n_choices))

    def log_likelihoods(self, nll: np.ndarray) -> np.ndarray:
        """[P, I, max choices] log-likelihood of each choice (-inf where an item has fewer choices)."""
        nll = np.atleast_2d(nll)
        out = np.full((nll.shape[0], self.n_items, int(self.n_choices.max())), -np.inf)
        out[:, self.column_item, self.column_choice] = -nll
        return out

    def score(self, nll: np.ndarray) -> dict[str, np.ndarray]:
        """accuracy, accuracy_norm, logprob [P] from the choices' summed NLL [P, C] (module docstring)."""
        ll = self.log_likelihoods(nll)
        per_char = np.full_like(ll, -np.inf)
        per_char[:, self.column_item, self.column_choice] = (
            ll[:, self.column_item, self.column_choice] / self.column_chars
        )
        items = np.arange(self.n_items)
        right = ll[:, items, self.answer]  # [P, I]
        out = {"logprob": right.mean(axis=1)}
        for key, values in (("accuracy", ll), ("accuracy_norm", per_char)):
            clean = np.where(np.isnan(values), -np.inf, values)
            hit = (clean.argmax(axis=2) == self.answer) & np.isfinite(right)
            out[key] = hit.mean(axis=1)
        return out


def _encode(tokenizer, text: str, special: bool) -> list[int]:
    return list(tokenizer(text, add_special_tokens=special)["input_ids"])


def encode_pair(tokenizer, context: str, choice: str, chat: bool) -> tuple[list[int], list[int]]:
    """(context tokens, choice tokens) as lm-eval's ``_encode_pair`` (module docstring)."""
    special = not chat
    if chat:
        context = chat_context(tokenizer, context)
    else:
        stripped = context.rstrip()
        choice = context[len(stripped) :] + choice
        context = stripped
    ctx = _encode(tokenizer, context, special)
    whole = _encode(tokenizer, context + choice, special)
    if whole[: len(ctx)] == ctx:
        return ctx, whole[len(ctx) :]
    return ctx, _encode(tokenizer, choice, False)  # the whole merged across the boundary: choice on its own


def encode(spec: ProbeSpec, tokenizer, max_items: int | None = None) -> ProbeRows:
    """Tokenize a probe set into shared-context rows (module docstring); identical choices are an error."""
    items = read_items(spec.path)
    n_in_file = len(items)
    limit = spec.max_items if spec.max_items is not None else max_items
    if limit is not None:
        items = items[:limit]
    rows: list[list[int]] = []
    target_rows, target_pos, target_label, target_col = [], [], [], []
    column_item, column_choice, column_chars = [], [], []
    problems = []
    for i, item in enumerate(items):
        pairs = [encode_pair(tokenizer, item.context, c, spec.chat) for c in item.choices]
        seqs = [ctx + cont for ctx, cont in pairs]
        seen: dict[tuple[int, ...], int] = {}
        if not pairs[0][0]:
            problems.append(f"{spec.path}:{item.line}: the context tokenizes to nothing")
        for j, (_, cont) in enumerate(pairs):
            if not cont:
                problems.append(f"{spec.path}:{item.line}: choice {j} ({item.choices[j]!r}) tokenizes to nothing")
            key = tuple(seqs[j])
            if key in seen:
                k = seen[key]
                problems.append(
                    f"{spec.path}:{item.line}: choices {k} ({item.choices[k]!r}) and {j} ({item.choices[j]!r}) "
                    f"tokenize identically ({list(pairs[j][1])}): they cannot be told apart"
                )
            seen[key] = j
        if problems:
            continue
        # The prefix each choice needs (all but its last token); rows are the maximal ones.
        needs = [s[:-1] for s in seqs]
        item_rows: list[int] = []
        for j in sorted(range(len(needs)), key=lambda j: -len(needs[j])):
            host = next((r for r in item_rows if rows[r][: len(needs[j])] == needs[j]), None)
            if host is None:
                rows.append(list(needs[j]))
                host = len(rows) - 1
                item_rows.append(host)
        for j, (ctx, cont) in enumerate(pairs):
            host = next(r for r in item_rows if rows[r][: len(needs[j])] == needs[j])
            col = len(column_item)
            for t, label in enumerate(cont):
                target_rows.append(host)
                target_pos.append(len(ctx) - 1 + t)
                target_label.append(label)
                target_col.append(col)
            column_item.append(i)
            column_choice.append(j)
            column_chars.append(len(item.choices[j]))
    if problems:
        more = f"\n  ... and {len(problems) - MAX_PROBLEMS} more" if len(problems) > MAX_PROBLEMS else ""
        raise LlmscapeError(f"probe set {spec.name!r}:\n  " + "\n  ".join(problems[:MAX_PROBLEMS]) + more)
    width = max(len(r) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, toks in enumerate(rows):
        ids[r, : len(toks)] = torch.tensor(toks)
        mask[r, : len(toks)] = 1
    targets = Targets(
        *(np.asarray(x, dtype=np.int64) for x in (target_rows, target_pos, target_label, target_col)),
        n_columns=len(column_item),
    )
    texts = [tokenizer.decode(r) for r in rows]
    return ProbeRows(
        name=spec.name,
        chat=spec.chat,
        rows=EvalSet(ids, mask, texts, targets),
        column_item=np.asarray(column_item, dtype=np.int64),
        column_choice=np.asarray(column_choice, dtype=np.int64),
        column_chars=np.asarray(column_chars, dtype=np.int64),
        answer=np.asarray([it.answer for it in items], dtype=np.int64),
        n_choices=np.asarray([len(it.choices) for it in items], dtype=np.int64),
        lines=np.asarray([it.line for it in items], dtype=np.int64),
        contexts=[it.context for it in items],
        choices=[list(it.choices) for it in items],
        attrs={
            "name": spec.name,
            "chat": spec.chat,
            "description": spec.description,
            "source": str(spec.path),
            "source_sha256": file_sha256(spec.path),
            "n_items": len(items),
            "n_items_in_file": n_in_file,
        },
    )


# ------------------------------------------------------------------------------------ files

_STR = h5py.string_dtype()


def save_probe_rows(path: str | Path, probe: ProbeRows, attrs: dict | None = None) -> None:
    """The ``probe-set`` HDF5 file (docs/results-format.md)."""
    t = probe.rows.targets
    with h5io.write(path, "probe-set") as f:
        f.create_dataset("input_ids", data=probe.rows.input_ids.numpy())
        f.create_dataset("attention_mask", data=probe.rows.attention_mask.numpy())
        for key in ("row", "pos", "label", "column"):
            f.create_dataset(f"targets/{key}", data=getattr(t, key))
        f.create_dataset("columns/item", data=probe.column_item)
        f.create_dataset("columns/choice", data=probe.column_choice)
        f.create_dataset("columns/chars", data=probe.column_chars)
        f.create_dataset("items/answer", data=probe.answer)
        f.create_dataset("items/n_choices", data=probe.n_choices)
        f.create_dataset("items/line", data=probe.lines)
        f.create_dataset("items/context", data=np.array(probe.contexts, dtype=_STR))
        f.create_dataset("items/choices", data=np.array([json.dumps(c) for c in probe.choices], dtype=_STR))
        h5io.set_attrs(f, {**probe.attrs, "chance": probe.chance, "n_columns": t.n_columns, **(attrs or {})})


def _str(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def load_probe_rows(path: str | Path) -> ProbeRows:
    with h5io.read(path, "probe-set") as f:
        attrs = h5io.get_attrs(f)
        targets = Targets(*(f[f"targets/{k}"][...] for k in ("row", "pos", "label", "column")), attrs["n_columns"])
        ids = torch.from_numpy(f["input_ids"][...])
        rows = EvalSet(ids, torch.from_numpy(f["attention_mask"][...]), [""] * len(ids), targets)
        return ProbeRows(
            name=attrs["name"],
            chat=bool(attrs["chat"]),
            rows=rows,
            column_item=f["columns/item"][...],
            column_choice=f["columns/choice"][...],
            column_chars=f["columns/chars"][...],
            answer=f["items/answer"][...],
            n_choices=f["items/n_choices"][...],
            lines=f["items/line"][...],
            contexts=_str(f["items/context"][...]),
            choices=[json.loads(c) for c in _str(f["items/choices"][...])],
            attrs=attrs,
        )


# ------------------------------------------------------------------------------------ evaluation


def concat(sets: list[EvalSet]) -> tuple[EvalSet, list[slice]]:
    """One evaluation set holding several (rows and columns in order), and each one's column range."""
    width = max(s.input_ids.shape[1] for s in sets)
    ids, mask, texts, parts, spans = [], [], [], [], []
    row0 = col0 = 0
    for s in sets:
        pad = width - s.input_ids.shape[1]
        ids.append(torch.nn.functional.pad(s.input_ids, (0, pad)))
        mask.append(torch.nn.functional.pad(s.attention_mask, (0, pad)))
        texts += list(s.texts)
        t = s.predictions()
        parts.append((t.row + row0, t.pos, t.label, t.column + col0))
        spans.append(slice(col0, col0 + t.n_columns))
        row0 += len(s)
        col0 += t.n_columns
    targets = Targets(*(np.concatenate(x) for x in zip(*parts, strict=True)), n_columns=col0)
    return EvalSet(torch.cat(ids), torch.cat(mask), texts, targets), spans


class Evaluation:
    """The loss's evaluation set with the capability probe rows appended: one set for the engines.

    ``metrics(stats)`` splits an engine's per-column statistics back into the loss metrics of
    llmscape.loss (over the data's columns, exactly as without probes) and, per probe set
    ``<name>``, ``<name>/accuracy``, ``<name>/accuracy_norm`` and ``<name>/logprob``.
    """

    def __init__(self, data: EvalSet, probes: list[ProbeRows] | None = None):
        self.data = data
        self.probes = list(probes or [])
        if self.probes:
            self.evalset, spans = concat([data] + [p.rows for p in self.probes])
            self.data_columns, self.probe_columns = spans[0], spans[1:]
        else:
            self.evalset, self.data_columns, self.probe_columns = data, slice(0, data.n_columns), []
        self.n_tokens = data.n_tokens

    @property
    def names(self) -> list[str]:
        """The capability metric names, ``<set>/<metric>``."""
        return [f"{p.name}/{m}" for p in self.probes for m in METRICS]

    def metrics(self, stats: SequenceStats) -> dict[str, np.ndarray]:
        cols = self.data_columns
        out = metrics(SequenceStats(stats.nll_sum[:, cols], stats.correct[:, cols]), self.n_tokens)
        for probe, span in zip(self.probes, self.probe_columns, strict=True):
            for key, value in probe.score(stats.nll_sum[:, span]).items():
                out[f"{probe.name}/{key}"] = value
        return out


def column_nll(
    model: torch.nn.Module, data: EvalSet, batch_size: int = 16, grad: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed NLL and argmax-correct count per column [C] (float64), by plain forward passes.

    The model's own forward over each batch of rows, its logits at the target positions,
    log-softmax in float64. With ``grad`` the NLL stays differentiable (worst-direction ascent).
    """
    t = data.predictions()
    device = next(model.parameters()).device
    nll = torch.zeros(t.n_columns, dtype=torch.float64, device=device)
    correct = torch.zeros(t.n_columns, dtype=torch.float64, device=device)
    with torch.set_grad_enabled(grad):
        for start in range(0, len(data), batch_size):
            rows = np.arange(start, min(start + batch_size, len(data)))
            local, pos, label, column = (torch.as_tensor(x, device=device) for x in t.of_rows(rows))
            if len(local) == 0:
                continue
            width = int(data.attention_mask[rows].sum(dim=1).max())
            ids = data.input_ids[rows, :width].to(device)
            mask = data.attention_mask[rows, :width].to(device)
            logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[local, pos].double()
            token_nll = torch.logsumexp(logits, dim=1) - logits.gather(1, label.unsqueeze(1)).squeeze(1)
            nll = nll.index_add(0, column, token_nll)
            correct = correct.index_add(0, column, (logits.argmax(dim=1) == label).double())
    return nll, correct
