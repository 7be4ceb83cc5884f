"""What a workflow's nodes get at run time (LangGraph's `Runtime.context`): a chat model per role,
the run's MCP tools, a folder for files, and a way to report progress."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from langchain_core.language_models import BaseChatModel
from langchain_core.tools import BaseTool
from langchain_openai import ChatOpenAI
from langgraph.config import get_config, get_stream_writer
from mcp import ClientSession

from braid.clients.mcp_client import call_tool

from .config import RoleModel, WorkflowConfig
from .meter import UsageMeter

__all__ = ["RunContext", "chat_model"]


def chat_model(role: str, settings: RoleModel, meter: UsageMeter | None = None,
               http: httpx.AsyncClient | None = None) -> ChatOpenAI:
    """LangChain's ChatOpenAI on the role's endpoint; usage of every call goes to `meter`.

    `http`: the run's own connection pool. ChatOpenAI otherwise shares one cached client per base URL
    across event loops, which breaks the second `asyncio.run` (each `Workflow.invoke`).
    """
    return ChatOpenAI(http_async_client=http, base_url=settings.base_url, api_key=settings.resolved_api_key(), model=settings.model or "",
                      temperature=settings.temperature, top_p=settings.top_p, max_tokens=settings.max_tokens,
                      seed=settings.seed, timeout=settings.timeout_s, max_retries=settings.max_retries,
                      extra_body=settings.extra_body or None, stream_usage=True,
                      callbacks=[meter] if meter else None, metadata={"braid_role": role})


@dataclass
class RunContext:
    config: WorkflowConfig
    thread_id: str
    files_dir: Path
    meter: UsageMeter
    tools_by_server: dict[str, list[BaseTool]] = field(default_factory=dict)
    http: httpx.AsyncClient | None = None
    sessions: dict[str, ClientSession] = field(default_factory=dict)
    """The run's open MCP sessions, by server name."""
    _models: dict[str, ChatOpenAI] = field(default_factory=dict)

    def model(self, role: str) -> BaseChatModel:
        if role not in self._models:
            self._models[role] = chat_model(role, self.config.role(role), self.meter, self.http)
        return self._models[role]

    def tools(self, *servers: str) -> list[BaseTool]:
        """The tools of the named MCP servers (all servers when none is named)."""
        names = servers or tuple(self.tools_by_server)
        missing = [n for n in names if n not in self.tools_by_server]
        if missing:
            raise KeyError(f"no MCP server {missing} in this workflow's `tools` config "
                           f"(configured: {sorted(self.tools_by_server)})")
        return [tool for name in names for tool in self.tools_by_server[name]]

    async def call_tool(self, server: str, name: str, arguments: dict[str, Any] | None = None) -> Any:
        """Calls an MCP tool directly (not through a model): its structured result, or McpToolError."""
        if server not in self.sessions:
            raise KeyError(f"no MCP server {server!r} in this workflow's `tools` config "
                           f"(configured: {sorted(self.sessions)})")
        return await call_tool(self.sessions[server], name, arguments)

    def progress(self, **data: Any) -> None:
        """Reports progress (round, scores, ...) to whichever surface runs the workflow."""
        node = (get_config().get("metadata") or {}).get("langgraph_node", "")
        get_stream_writer()({"braid_progress": data, "node": node})
