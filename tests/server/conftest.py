from __future__ import annotations

import pytest

from server_process import start_server, stop_server

from served_settings import API_KEY, MAX_NUM_SEQS, MAX_QUEUE

ENGINE_OPTIONS = {
    "vllm": {"enforce_eager": True, "kv_cache_memory_bytes": 256 << 20},
    "transformers": {},
}


@pytest.fixture(scope="session", params=["vllm", "transformers"])
def served(request, tiny_llama_dir, tmp_path_factory):
    """A real server on 127.0.0.1 serving the tiny model as `tiny`, once per engine."""
    engine = request.param
    workdir = tmp_path_factory.mktemp(f"server-{engine}")
    settings = {
        "api_key": API_KEY,
        "max_queue": MAX_QUEUE,
        "log_level": "info",
        "models": [{"id": "tiny", "source": str(tiny_llama_dir), "engine": engine, "dtype": "float32",
                    "max_num_seqs": MAX_NUM_SEQS, "engine_options": ENGINE_OPTIONS[engine]}],
    }
    handle = start_server(settings, workdir)
    handle.engine = engine
    yield handle
    stop_server(handle)


@pytest.fixture(scope="session")
def reference(tiny_llama_dir):
    """The tiny model run directly with transformers (float32): the independent reference."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    return model, tokenizer
