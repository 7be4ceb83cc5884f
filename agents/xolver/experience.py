"""The episodic (experience) memory, through Braid's memory MCP server: solved problems retrieved as
exemplars, and the best verified solution of each run written back for later runs and users."""
from __future__ import annotations

from typing import Any

from braid.clients.mcp_client import McpToolError

from ..runtime.context import RunContext
from .answers import extract_answer
from .config import XolverConfig
from .state import Exemplar, Response

__all__ = ["remember", "retrieve"]

SERVER = "memory"


def _exemplar(hit: dict[str, Any], mode: str) -> Exemplar:
    meta = hit.get("metadata") or {}
    solution = str(meta.get("solution") or meta.get("answer") or "")
    similarity = hit.get("bm25_score") if mode == "bm25" else hit.get("dense_score")
    return Exemplar(problem=hit["text"], solution=solution,
                    answer=str(meta["final_answer"]) if meta.get("final_answer") is not None
                    else extract_answer(solution), code=meta.get("code"), similarity=similarity)


async def retrieve(ctx: RunContext, config: XolverConfig, problem: str) -> list[Exemplar]:
    """Up to k solved problems at least `min_similarity` alike; [] when the collection does not exist yet."""
    if not config.use_memory or config.exemplars == 0:
        return []
    try:
        found = await ctx.call_tool(SERVER, "memory_search", {"collection": config.collection, "query": problem,
                                                              "k": config.exemplars, "mode": config.retrieval_mode})
    except McpToolError as exc:
        if "no collection" in exc.message:
            return []
        raise
    hits = [_exemplar(hit, config.retrieval_mode) for hit in found.get("hits", [])]
    return [h for h in hits if h.similarity is not None and h.similarity >= config.min_similarity]


async def remember(ctx: RunContext, config: XolverConfig, problem: str, best: Response, model: str) -> str:
    """Writes the verified solution; returns its record id."""
    record = {"text": problem, "score": best.score, "labels": ["xolver", "verified"],
              "metadata": {"final_answer": best.answer, "solution": best.text, "code": best.code,
                           "executed": best.executed, "score": best.score, "model": model, "source": "xolver",
                           "thread_id": ctx.thread_id, "role": best.role, "round": best.round}}
    added = await ctx.call_tool(SERVER, "memory_add", {"collection": config.collection, "records": [record]})
    return added["ids"][0]
