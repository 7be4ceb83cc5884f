"""The ``braid`` command line: the clients' own commands (``chat``, ``models``) composed with the
sub-commands each package contributes (``serve`` from the server, ``index`` from memory, ``mcp``
from tools)."""
from __future__ import annotations

import importlib
import json
import os
import sys
from typing import Optional

import typer

from braid.server.cli import serve

__all__ = ["app"]

app = typer.Typer(help="Braid: an OpenAI-compatible inference server with research-grade decoding, and agents over MCP.",
                  no_args_is_help=True, add_completion=False)

DEFAULT_URL = "http://127.0.0.1:8000/v1"


def _client(url: str, api_key: Optional[str]):
    from openai import OpenAI

    return OpenAI(base_url=url, api_key=api_key or os.environ.get("BRAID_API_KEY") or "none")


def models(
    url: str = typer.Option(DEFAULT_URL, help="Base URL of a running Braid (or any OpenAI-compatible) server."),
    api_key: Optional[str] = typer.Option(None, help="API key, if the server needs one (env BRAID_API_KEY)."),
) -> None:
    """List the models a running server serves."""
    for card in _client(url, api_key).models.list().data:
        extra = card.model_extra or {}
        typer.echo(f"{card.id}\tengine={extra.get('engine')}\tmax_model_len={extra.get('max_model_len')}")


def chat(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model id (default: the server's first model)."),
    url: str = typer.Option(DEFAULT_URL, help="Base URL of a running server."),
    api_key: Optional[str] = typer.Option(None, help="API key, if the server needs one (env BRAID_API_KEY)."),
    system: Optional[str] = typer.Option(None, help="System prompt."),
    temperature: float = typer.Option(0.7, help="Sampling temperature (0 = greedy)."),
    max_tokens: int = typer.Option(256, help="Most tokens per answer."),
    extra_body: Optional[str] = typer.Option(None, help="JSON merged into each request (e.g. Braid decoding options)."),
) -> None:
    """Chat in the terminal with a running server; answers stream as they are generated. Ctrl-D or /exit quits."""
    client = _client(url, api_key)
    model = model or client.models.list().data[0].id
    messages = [{"role": "system", "content": system}] if system else []
    extra = json.loads(extra_body) if extra_body else None
    typer.echo(f"chatting with {model} at {url} (/exit or Ctrl-D to quit, /reset to start over)")
    while True:
        try:
            line = input("you> ")
        except EOFError:
            typer.echo()
            return
        if line.strip() in ("/exit", "/quit"):
            return
        if line.strip() == "/reset":
            messages = messages[:1] if system else []
            continue
        messages.append({"role": "user", "content": line})
        sys.stdout.write(f"{model}> ")
        answer = []
        stream = client.chat.completions.create(model=model, messages=messages, stream=True, temperature=temperature,
                                                max_tokens=max_tokens, extra_body=extra)
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                answer.append(chunk.choices[0].delta.content)
                sys.stdout.write(chunk.choices[0].delta.content)
                sys.stdout.flush()
        sys.stdout.write("\n")
        messages.append({"role": "assistant", "content": "".join(answer)})


def _add_optional(module: str, attr: str, name: str, help_text: str | None) -> None:
    """Sub-command groups that live beside their packages (memory indexing, MCP servers)."""
    try:
        sub = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return
    if isinstance(sub, typer.Typer):
        app.add_typer(sub, name=name, help=help_text)
    else:
        app.command(name=name, help=help_text)(sub)


app.command()(serve)
app.command()(models)
app.command()(chat)
_add_optional("braid.memory.cli", "index_app", "index", "Index a corpus (JSONL/CSV/text folder) into a Braid store.")
_add_optional("braid.agents.cli", "run_command", "run", None)  # None: the command's own docstring
_add_optional("braid.agents.cli", "runs_app", "runs", "Runs of workflows: list, show, and the workflows available.")
_add_optional("braid.tools.cli", "mcp_app", "mcp", "Run Braid's MCP servers (memory, search, python, calculator, llm, agents).")
_add_optional("braid.agents.eval.cli", "eval_command", "eval", None)

if __name__ == "__main__":
    app()
