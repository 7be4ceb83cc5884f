from __future__ import annotations

import pytest

from server_process import start_server, stop_server

from served_settings import API_KEY, MAX_NUM_SEQS, MAX_QUEUE
from tool_model import TOOLS_TEMPLATE, build_tool_llama

# tests/server/conftest.py's ENGINE_OPTIONS, with room for two engines in one vLLM process.
ENGINE_OPTIONS = {
    "vllm": {"enforce_eager": True, "kv_cache_memory_bytes": 128 << 20},
    "transformers": {},
}


@pytest.fixture(scope="session")
def tiny_2k_dir(tmp_path_factory):
    return build_tool_llama(tmp_path_factory.mktemp("tiny-llama-2k"))


@pytest.fixture(scope="session")
def tiny_2k_tokenizer(tiny_2k_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_2k_dir)


@pytest.fixture(scope="session")
def tiny_2k_reference(tiny_2k_dir, tiny_2k_tokenizer):
    """The 2k tiny model run directly with transformers (float32): the independent reference."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_2k_dir, dtype=torch.float32).eval(), tiny_2k_tokenizer


@pytest.fixture(scope="session")
def tools_template_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("templates") / "tools.jinja"
    path.write_text(TOOLS_TEMPLATE)
    return path


@pytest.fixture(scope="session", params=["vllm", "transformers"])
def structured_served(request, tiny_2k_dir, tools_template_file, tmp_path_factory):
    """A real server per engine serving the 2k tiny Llama twice: `tiny-2k` (compact constrained JSON,
    the default hermes tool format) and `tiny-2k-tpl` (a chat template that renders tools itself)."""
    engine = request.param
    workdir = tmp_path_factory.mktemp(f"server-structured-{engine}")
    common = {"source": str(tiny_2k_dir), "engine": engine, "dtype": "float32", "max_num_seqs": MAX_NUM_SEQS,
              "disable_any_whitespace": True, "engine_options": ENGINE_OPTIONS[engine]}
    settings = {
        "api_key": API_KEY,
        "max_queue": MAX_QUEUE,
        "log_level": "info",
        "models": [{"id": "tiny-2k", **common},
                   {"id": "tiny-2k-tpl", "chat_template": str(tools_template_file), **common}],
    }
    # One torch thread: faster for a tiny model, and much faster on a shared CPU.
    env = {"OMP_NUM_THREADS": "1"} if engine == "transformers" else None
    handle = start_server(settings, workdir, env=env)
    handle.engine = engine
    yield handle
    stop_server(handle)
