"""Every server through a real MCP session (official client), over stdio and streamable HTTP."""
from __future__ import annotations

import pytest
from mcp_harness import error_text, mcp_session
from fake_openai_server import FakeOpenAI, running_fake_openai

from braid.clients.mcp_client import McpToolError, call_tool
from braid.tools.sandbox import detect_isolation


async def _tool_names(session) -> set[str]:
    return {tool.name for tool in (await session.list_tools()).tools}


@pytest.fixture(scope="module")
def corpus_store(tmp_path_factory) -> str:
    from braid.memory import HashingEmbedder, Store

    path = tmp_path_factory.mktemp("corpus")
    with Store.open(path, embedder=HashingEmbedder()) as store:
        store.collection("docs").add([
            {"id": "faiss", "text": "faiss flat index gives exact nearest neighbour search", "metadata": {"src": "ann"}},
            {"id": "bm25", "text": "bm25 ranks documents by term frequency and inverse document frequency",
             "metadata": {"src": "ir"}},
            {"id": "lora", "text": "low rank adapters fine tune large language models", "metadata": {"src": "ml"}},
        ])
    return str(path)


async def test_calculator(transport):
    async with mcp_session(transport, "calculator") as session:
        assert await _tool_names(session) == {"calculate"}
        assert (await call_tool(session, "calculate", {"expression": "0.1 + 0.2"}))["result"] == "3/10"
        assert "unknown function" in error_text(await session.call_tool("calculate", {"expression": "open('x')"}))
        assert "expression" in error_text(await session.call_tool("calculate", {"expression": 3}))
        assert "precision" in error_text(await session.call_tool("calculate", {"expression": "1", "precision": 0}))
        assert (await call_tool(session, "calculate", {"expression": "2**64"}))["result"] == str(2**64)


@pytest.mark.skipif(detect_isolation() != "namespaces", reason="needs namespace isolation")
async def test_python(transport, monkeypatch):
    monkeypatch.setenv("BRAID_TEST_SECRET", "do-not-leak")  # the HTTP server inherits it; code must not see it
    async with mcp_session(transport, "python", "--timeout", "3", "--cpu-time", "2") as session:
        assert await _tool_names(session) == {"run_python"}
        out = await call_tool(session, "run_python", {"code": "import os\nprint(sorted(os.environ))\n2 ** 10"})
        assert out["value"] == "1024" and "BRAID_TEST_SECRET" not in out["stdout"] and out["error"] is None
        failed = await call_tool(session, "run_python", {"code": "import socket\nsocket.create_connection(('1.1.1.1', 53), 1)"})
        assert failed["error"].startswith("OSError")
        slow = await call_tool(session, "run_python", {"code": "import time; time.sleep(30)", "timeout_s": 0.5})
        assert slow["timed_out"] and "wall-clock" in slow["error"]
        assert "timeout_s" in error_text(await session.call_tool("run_python", {"code": "1", "timeout_s": 99}))
        assert "code" in error_text(await session.call_tool("run_python", {}))


async def test_memory(transport, tmp_path):
    async with mcp_session(transport, "memory", "--store", str(tmp_path), "--embedder", "hashing") as session:
        assert await _tool_names(session) == {"memory_add", "memory_search", "memory_get", "memory_delete",
                                              "memory_collections"}
        added = await call_tool(session, "memory_add", {"collection": "notes", "records": [
            {"text": "the cat sat on the mat", "metadata": {"kind": "pet"}, "labels": ["a"]},
            {"text": "stock prices fell sharply", "metadata": {"kind": "finance"}, "score": 0.5},
        ]})
        assert added["count"] == 2
        cat_id = added["ids"][0]
        for mode in ("bm25", "dense", "hybrid"):
            hits = (await call_tool(session, "memory_search",
                                    {"collection": "notes", "query": "cat on a mat", "k": 1, "mode": mode}))["hits"]
            assert hits[0]["id"] == cat_id, mode
        filtered = await call_tool(session, "memory_search", {"collection": "notes", "query": "cat prices",
                                                              "mode": "bm25", "filters": {"kind": "finance"}})
        assert [h["metadata"]["kind"] for h in filtered["hits"]] == ["finance"]
        record = await call_tool(session, "memory_get", {"collection": "notes", "id": cat_id})
        assert record["text"] == "the cat sat on the mat" and record["labels"] == ["a"]
        assert await call_tool(session, "memory_collections") == [{"name": "notes", "count": 2}]
        assert await call_tool(session, "memory_delete", {"collection": "notes", "ids": [cat_id, "nope"]}) == 1
        assert "no record" in error_text(await session.call_tool("memory_get", {"collection": "notes", "id": cat_id}))
        assert "no collection 'missing'" in error_text(
            await session.call_tool("memory_search", {"collection": "missing", "query": "x"}))
        assert "mode" in error_text(await session.call_tool(
            "memory_search", {"collection": "notes", "query": "x", "mode": "fuzzy"}))
        assert "text" in error_text(await session.call_tool("memory_add", {"collection": "notes", "records": [{}]}))


async def test_search(transport, corpus_store):
    options = ("--store", corpus_store, "--embedder", "hashing", "--collection", "docs")
    async with mcp_session(transport, "search", *options) as session:
        assert await call_tool(session, "search_collections") == ["docs"]
        result = await call_tool(session, "search", {"query": "exact nearest neighbour", "k": 2, "mode": "hybrid"})
        top = result["hits"][0]
        assert top["id"] == "faiss" and top["rank"] == 1
        assert top["bm25_score"] > 0 and top["dense_score"] is not None and top["score"] > 0
        bm25 = await call_tool(session, "search", {"query": "term frequency", "mode": "bm25", "collection": "docs"})
        assert bm25["hits"][0]["id"] == "bm25" and bm25["hits"][0]["dense_score"] is None
        assert "k" in error_text(await session.call_tool("search", {"query": "x", "k": 0}))
        assert "no collection" in error_text(await session.call_tool("search", {"query": "x", "collection": "nope"}))


async def test_llm(transport):
    with running_fake_openai(FakeOpenAI(api_key="test-key")) as fake:
        options = ("--base-url", fake.url, "--api-key", "test-key")
        async with mcp_session(transport, "llm", *options) as session:
            assert await call_tool(session, "llm_models") == ["fake-model"]
            chat = await call_tool(session, "llm_chat", {"messages": [{"role": "user", "content": "hello there"}]})
            assert chat == {"text": "echo: hello there", "finish_reason": "stop", "model": "fake-model",
                            "prompt_tokens": 2, "completion_tokens": 3}
            gen = await call_tool(session, "llm_generate", {"prompt": "abc", "model": "fake-model", "max_tokens": 5})
            assert gen["text"] == "ABC"
            assert "role" in error_text(await session.call_tool("llm_chat", {"messages": [{"role": "robot", "content": "x"}]}))
            assert "temperature" in error_text(
                await session.call_tool("llm_generate", {"prompt": "x", "temperature": 5}))
            fake.faults[:] = [400]
            with pytest.raises(McpToolError, match="HTTP 400: injected 400"):
                await call_tool(session, "llm_generate", {"prompt": "x"})


async def test_llm_server_rejects_a_wrong_api_key():
    with running_fake_openai(FakeOpenAI(api_key="right")) as fake:
        async with mcp_session("stdio", "llm", "--base-url", fake.url, "--api-key", "wrong") as session:
            assert "HTTP 401" in error_text(await session.call_tool("llm_models", {}))
