"""End to end: `braid serve` with no model argument serves the bundled SmolLM2-135M-Instruct."""
from __future__ import annotations

import os
from pathlib import Path

import openai
import platformdirs
import pytest

from server_process import start_server, stop_server


@pytest.fixture(scope="module")
def smollm2_server(tmp_path_factory):
    # The converted model is cached per machine (BRAID_HOME or the user cache), as for users.
    home = os.environ.get("BRAID_HOME") or platformdirs.user_cache_dir("braid")
    handle = start_server({"home": home}, tmp_path_factory.mktemp("smollm2"), timeout=420)
    yield handle
    stop_server(handle)


@pytest.mark.slow
def test_default_model_answers_a_factual_question(smollm2_server):
    client = openai.OpenAI(base_url=smollm2_server.base_url, api_key="none", max_retries=0, timeout=120)
    assert [m.id for m in client.models.list().data] == ["smollm2-135m-instruct"]
    out = client.chat.completions.create(model="smollm2-135m-instruct", temperature=0, max_tokens=30,
                                         messages=[{"role": "user", "content": "What is the capital of France?"}])
    assert "Paris" in out.choices[0].message.content
    assert out.choices[0].finish_reason in ("stop", "length")
    assert Path(platformdirs.user_cache_dir("braid") if not os.environ.get("BRAID_HOME")
                else os.environ["BRAID_HOME"], "models", "smollm2-135m-instruct", "config.json").exists()
