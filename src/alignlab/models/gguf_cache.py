"""A cache of dequantised GGUF models as plain safetensors folders.

Dequantising SmolLM2-135M through transformers' GGUF support takes 10-15 s on 2 CPU cores;
loading the same float32 weights from safetensors takes under a second. The cache key is the
GGUF file's sha256, so a changed file is never served stale weights. ``ALIGNLAB_CACHE`` moves
the cache (default ``~/.cache/alignlab``); ``ALIGNLAB_NO_CACHE=1`` turns it off.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

FORMAT = 1


def cache_root() -> Path | None:
    if os.environ.get("ALIGNLAB_NO_CACHE", "") in ("1", "true", "yes"):
        return None
    return Path(os.environ.get("ALIGNLAB_CACHE", Path.home() / ".cache" / "alignlab")) / "gguf"


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _entry(path: Path) -> Path | None:
    root = cache_root()
    return None if root is None else root / f"{_file_sha256(path)[:32]}-v{FORMAT}"


def lookup(path: Path) -> Path | None:
    """The cached folder for this GGUF file, if a complete one exists."""
    entry = _entry(path)
    if entry is not None and (entry / "complete").is_file():
        return entry
    return None


def store(path: Path, model, tokenizer) -> None:
    """Write the dequantised model beside the cache; a failure only costs the next load time."""
    from safetensors.torch import save_model

    entry = _entry(path)
    if entry is None:
        return
    tmp = None
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=entry.parent))
        config = model.config.to_dict()
        config.pop("quantization_config", None)  # the weights are plain float32 now
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        save_model(model, str(tmp / "model.safetensors"))  # handles tied embeddings
        tokenizer.save_pretrained(str(tmp))
        (tmp / "complete").write_text(str(path))
        os.replace(tmp, entry)
    except OSError:
        pass  # read-only home, full disk, or another process won the rename
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
