"""The `llm` MCP server against a real Braid server (transformers engine, tiny model)."""
from __future__ import annotations

import openai
import pytest
from mcp_harness import mcp_session

from braid.clients.mcp_client import call_tool
from server_process import start_server, stop_server


@pytest.fixture(scope="module")
def braid_server(tiny_llama_dir, tmp_path_factory):
    handle = start_server({"api_key": "k", "models": [{"id": "tiny", "source": str(tiny_llama_dir),
                                                       "engine": "transformers", "dtype": "float32"}]},
                          tmp_path_factory.mktemp("llm-tool-braid"))
    yield handle
    stop_server(handle)


async def test_llm_tool_returns_what_the_server_generates(braid_server, transport):
    direct = openai.OpenAI(base_url=braid_server.base_url, api_key="k", max_retries=0)
    messages = [{"role": "user", "content": "hello there"}]
    want_chat = direct.chat.completions.create(model="tiny", messages=messages, temperature=0, max_tokens=8)
    want_text = direct.completions.create(model="tiny", prompt="abc", temperature=0, max_tokens=6)
    async with mcp_session(transport, "llm", "--base-url", braid_server.base_url, "--api-key", "k") as session:
        assert await call_tool(session, "llm_models") == ["tiny"]
        chat = await call_tool(session, "llm_chat", {"messages": messages, "temperature": 0, "max_tokens": 8})
        assert chat["text"] == want_chat.choices[0].message.content
        assert chat["completion_tokens"] == want_chat.usage.completion_tokens
        gen = await call_tool(session, "llm_generate", {"prompt": "abc", "temperature": 0, "max_tokens": 6})
        assert gen["text"] == want_text.choices[0].text
