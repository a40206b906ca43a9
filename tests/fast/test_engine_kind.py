"""`AISLE_LLM=auto` (agent/engines/__init__.py `engine_kind`): which backend runs which model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from agent.engines import engine_kind
from agent.settings import Settings

pytestmark = pytest.mark.fast

HAS_LLAMA_CPP = importlib.util.find_spec("llama_cpp") is not None


def test_the_packaged_model_runs_on_transformers():
    assert engine_kind(Settings(llm="auto", llm_model=None)) == "transformers"


@pytest.mark.parametrize("model", ["qwen2.5-coder-1.5b", "/models/any.Q4_K_M.gguf"])
def test_a_quantised_model_runs_on_llama_cpp_when_it_is_installed(model):
    assert engine_kind(Settings(llm="auto", llm_model=Path(model))) == ("llamacpp" if HAS_LLAMA_CPP else "transformers")


def test_a_hugging_face_folder_runs_on_transformers(tmp_path):
    assert engine_kind(Settings(llm="auto", llm_model=tmp_path)) == "transformers"


@pytest.mark.parametrize("kind", ["transformers", "llamacpp", "vllm", "openai"])
def test_a_named_backend_is_used_as_named(kind):
    assert engine_kind(Settings(llm=kind, llm_model=Path("qwen2.5-coder-1.5b"))) == kind
