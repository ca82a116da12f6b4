"""Where the fast engine's weights live: resident in the model, or streamed layer by layer.

``ResidentWeights`` wraps a fully loaded model: bringing a layer in is a no-op.

``StreamedWeights`` builds the model as an empty skeleton (accelerate's
``init_empty_weights``: every parameter on the ``meta`` device, nothing allocated)
and brings decoder layers onto the compute device one at a time with
``set_module_tensor_to_device``, sending them back to ``meta`` afterwards. The source
of a layer's tensors is the safetensors files on disk (``offload: disk``; each read
opens the file memory-mapped and closes it again, so mapped pages never pile up in
the process) or a copy held in CPU RAM (``offload: cpu``, for a cuda compute device).
The two big vocabulary matrices (input embedding, output head) are never resident:
the embedding is read once in row chunks to embed the evaluation set, and the head
is read in the same row chunks the chunked loss uses.
"""

from __future__ import annotations

from pathlib import Path

import torch

from llmscape.errors import LlmscapeError
from llmscape.models import dtype_of


def _param_names_by_id(model: torch.nn.Module) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        out.setdefault(id(p), []).append(name)
    return out


class ResidentWeights:
    """All weights already on the compute device (a model loaded the ordinary way)."""

    streaming = False

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.embed = model.get_input_embeddings()
        self.head = model.get_output_embeddings()

    def ensure_layer(self, index: int) -> None:  # noqa: D102 - nothing to bring in
        pass

    def release_layer(self, index: int) -> None:
        pass

    @torch.no_grad()
    def embed_ids(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embed(ids.to(self.device))

    def head_rows(self, start: int, stop: int) -> torch.Tensor:
        return self.head.weight[start:stop]

    def layer_bytes(self, index: int) -> int:
        from llmscape.architecture import find_layers

        layer = find_layers(self.model)[1][index]
        return sum(p.numel() * p.element_size() for p in layer.parameters())


class StreamedWeights:
    """A skeleton model whose decoder layers are loaded one at a time from safetensors."""

    streaming = True

    def __init__(self, model_dir: str | Path, dtype: str = "float32", device: str = "cpu", offload: str | None = None):
        from accelerate.utils import set_module_tensor_to_device
        from safetensors import safe_open

        from llmscape.architecture import find_layers, skeleton

        self.model_dir = Path(model_dir)
        self.device = torch.device(device)
        self.dtype = dtype_of(dtype)
        self.offload = offload or ("disk" if self.device.type == "cpu" else "cpu")
        if self.offload not in ("disk", "cpu"):
            raise LlmscapeError(f"engine.offload must be 'disk' or 'cpu', got {self.offload!r}")
        self._set = set_module_tensor_to_device
        self._safe_open = safe_open

        model = skeleton(self.model_dir, self.dtype)
        model.eval()
        model.requires_grad_(False)
        self.model = model

        # Which file holds each tensor (headers only).
        self.files: dict[str, Path] = {}
        for f in sorted(self.model_dir.glob("*.safetensors")):
            with safe_open(f, framework="pt") as fh:
                for name in fh.keys():
                    self.files[name] = f
        if not self.files:
            raise LlmscapeError(f"{self.model_dir} holds no *.safetensors file to stream from")

        self.embed = model.get_input_embeddings()
        self.head = model.get_output_embeddings()
        head_own = next(n for n, m in model.named_modules() if m is self.head) + ".weight"
        if self.head.weight is self.embed.weight and head_own in self.files:
            # Tied in the config but stored separately: from_pretrained then leaves them
            # untied (warning "both are present in the checkpoints"); do the same.
            self.head.weight = torch.nn.Parameter(torch.empty_like(self.embed.weight), requires_grad=False)
        names_by_id = _param_names_by_id(model)
        self.embed_name = self._stored_name(names_by_id[id(self.embed.weight)])
        self.head_name = self._stored_name(names_by_id[id(self.head.weight)])
        self.vocab, self.hidden = self.embed.weight.shape

        layers_name, layers = find_layers(model)
        self.layer_names: list[list[str]] = []
        for i, layer in enumerate(layers):
            names = [n for n, _ in layer.named_parameters()]
            self.layer_names.append([self._stored_name([f"{layers_name}.{i}.{n}"]) for n in names])
        # Everything else that is neither a layer nor a vocabulary matrix is small
        # (the final norm): load it for good.
        big = {id(self.embed.weight), id(self.head.weight)}
        for name, p in model.named_parameters():
            if id(p) in big or name.startswith(layers_name + "."):
                continue
            self._load_into_model([self._stored_name([name])])

        self.cpu_copy: dict[str, torch.Tensor] = {}
        if self.offload == "cpu":
            for names in self.layer_names:
                for name, t in self._read(names).items():
                    self.cpu_copy[name] = t.pin_memory() if self.device.type == "cuda" else t

    def _stored_name(self, candidates: list[str]) -> str:
        for name in candidates:
            if name in self.files:
                return name
        raise LlmscapeError(
            f"none of {candidates} is stored in {self.model_dir}; streaming needs the checkpoint's "
            "tensor names to match the model's parameter names"
        )

    def _read(self, names: list[str]) -> dict[str, torch.Tensor]:
        """Read named tensors from disk; the files are closed again before returning."""
        out = {}
        by_file: dict[Path, list[str]] = {}
        for n in names:
            by_file.setdefault(self.files[n], []).append(n)
        for f, ns in by_file.items():
            with self._safe_open(f, framework="pt") as fh:
                for n in ns:
                    out[n] = fh.get_tensor(n).to(self.dtype)
        return out

    def _load_into_model(self, names: list[str]) -> None:
        if self.offload == "cpu" and all(n in self.cpu_copy for n in names):
            tensors = {n: self.cpu_copy[n] for n in names}
        else:
            tensors = self._read(names)
        for n, t in tensors.items():
            self._set(self.model, n, self.device, value=t.to(self.device, non_blocking=True))

    def ensure_layer(self, index: int) -> None:
        self._load_into_model(self.layer_names[index])

    def release_layer(self, index: int) -> None:
        for n in self.layer_names[index]:
            self._set(self.model, n, "meta")

    @torch.no_grad()
    def embed_ids(self, ids: torch.Tensor, chunk_rows: int = 8192) -> torch.Tensor:
        """Embedding lookup reading the embedding matrix in row chunks (never whole)."""
        ids = ids.to(self.device)
        out = torch.empty((*ids.shape, self.hidden), dtype=self.dtype, device=self.device)
        for start in range(0, self.vocab, chunk_rows):
            stop = min(start + chunk_rows, self.vocab)
            hit = (ids >= start) & (ids < stop)
            if hit.any():
                rows = self.head_rows(start, stop, name=self.embed_name)
                out[hit] = rows[ids[hit] - start]
        return out

    def head_rows(self, start: int, stop: int, name: str | None = None) -> torch.Tensor:
        """Rows start..stop of the head (or embedding) matrix, read from disk."""
        name = name or self.head_name
        with self._safe_open(self.files[name], framework="pt") as fh:
            rows = fh.get_slice(name)[start:stop]
        return rows.to(self.device, self.dtype)

    def layer_bytes(self, index: int) -> int:
        shapes = {}
        for n in self.layer_names[index]:
            with self._safe_open(self.files[n], framework="pt") as fh:
                shapes[n] = fh.get_slice(n).get_shape()
        elt = torch.empty((), dtype=self.dtype).element_size()
        return sum(int(torch.Size(s).numel()) * elt for s in shapes.values())
