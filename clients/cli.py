"""The ``braid`` command line: serve models, chat with a server, list models, index corpora, run MCP servers."""
from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from braid.server.models.config import DEFAULT_MODEL

__all__ = ["app"]

app = typer.Typer(help="Braid: an OpenAI-compatible inference server with research-grade decoding, and agents over MCP.",
                  no_args_is_help=True, add_completion=False)

DEFAULT_URL = "http://127.0.0.1:8000/v1"


@app.command()
def serve(
    model: Optional[str] = typer.Option(
        None, "--model", "-m",
        help=f"Model to serve: a bundled name ({DEFAULT_MODEL}), a local transformers folder, or a Hugging Face id. "
             "Default: the bundled SmolLM2-135M-Instruct. Ignored when --config lists models."),
    served_name: Optional[str] = typer.Option(None, "--served-model-name", help="Model id clients use (default: --model)."),
    engine: Optional[str] = typer.Option(
        None, "--engine", "-e", help="Engine: 'vllm' (vLLM's async engine, default; runs ICD) or 'transformers' "
                                     "(PyTorch; runs ICD, ASCD, VCD and span steering). Byte-level models, "
                                     "ensembles and proxy-tuning are defined in --config (kind: bytelevel, "
                                     "ensemble, proxy)."),
    config: Optional[Path] = typer.Option(
        None, "--config", "-c", exists=True, dir_okay=False,
        help="YAML/TOML/JSON settings file; may list several models (id, source, engine, engine_options)."),
    host: Optional[str] = typer.Option(None, help="Address to bind (default 127.0.0.1; env BRAID_HOST)."),
    port: Optional[int] = typer.Option(None, help="Port (default 8000; env BRAID_PORT)."),
    api_key: Optional[str] = typer.Option(None, "--api-key", help="Require `Authorization: Bearer KEY` (env BRAID_API_KEY)."),
    max_model_len: Optional[int] = typer.Option(None, help="Cap the context length (default: the model's)."),
    log_level: Optional[str] = typer.Option(None, help="debug, info, warning or error (env BRAID_LOG_LEVEL)."),
) -> None:
    """Start the OpenAI-compatible server (POST /v1/chat/completions, /v1/completions; GET /v1/models, /metrics)."""
    from braid.server.api.app import run_server
    from braid.server.models.config import ModelConfig, load_settings

    models = None
    if model is not None or engine is not None or max_model_len is not None:
        source = model or DEFAULT_MODEL
        # The bundled model's de-quantized Q4 weights answer badly in bfloat16 (vLLM's CPU default).
        dtype = "float32" if source == DEFAULT_MODEL else "auto"
        models = [ModelConfig(id=served_name or source, source=source, engine=engine or "vllm",
                              max_model_len=max_model_len, dtype=dtype)]
    try:
        settings = load_settings(config, host=host, port=port, api_key=api_key, log_level=log_level, models=models)
    except Exception as exc:
        typer.echo(f"invalid settings: {exc}", err=True)
        raise typer.Exit(2)
    run_server(settings)


def _client(url: str, api_key: Optional[str]):
    from openai import OpenAI

    return OpenAI(base_url=url, api_key=api_key or os.environ.get("BRAID_API_KEY") or "none")


@app.command()
def models(
    url: str = typer.Option(DEFAULT_URL, help="Base URL of a running Braid (or any OpenAI-compatible) server."),
    api_key: Optional[str] = typer.Option(None, help="API key, if the server needs one (env BRAID_API_KEY)."),
) -> None:
    """List the models a running server serves."""
    for card in _client(url, api_key).models.list().data:
        extra = card.model_extra or {}
        typer.echo(f"{card.id}\tengine={extra.get('engine')}\tmax_model_len={extra.get('max_model_len')}")


@app.command()
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


def _add_optional(module: str, attr: str, name: str, help_text: str) -> None:
    """Sub-command groups that live beside their packages (memory indexing, MCP servers)."""
    try:
        sub = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return
    if isinstance(sub, typer.Typer):
        app.add_typer(sub, name=name, help=help_text)
    else:
        app.command(name=name, help=help_text)(sub)


_add_optional("braid.memory.cli", "index_app", "index", "Index a corpus (JSONL/CSV/text folder) into a Braid store.")
_add_optional("braid.tools.cli", "mcp_app", "mcp", "Run Braid's MCP tool servers (memory, search, python, calculator, llm).")

if __name__ == "__main__":
    app()
