"""The server's sub-command: ``braid serve`` (composed into the ``braid`` CLI by ``braid.clients.cli``)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .models.config import DEFAULT_MODEL, ModelConfig, load_settings

__all__ = ["serve"]


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
    drain_timeout: Optional[float] = typer.Option(
        None, "--drain-timeout", help="On SIGTERM or Ctrl-C, seconds requests in flight may take to finish before "
                                      "they are ended with an error (default 30; env BRAID_DRAIN_TIMEOUT_S). A second "
                                      "signal stops at once."),
    restart_engines: Optional[bool] = typer.Option(
        None, "--restart-engines/--no-restart-engines",
        help="Restart an engine that fails (default), or drain and exit with status 1 for a process supervisor "
             "to restart the server. Attempts and backoff: `engine_restart` in --config."),
) -> None:
    """Start the OpenAI-compatible server (POST /v1/chat/completions, /v1/completions; GET /v1/models, /health,
    /metrics). /health answers 503 with the reason while an engine is down or the server drains."""
    from .api.app import run_server  # torch, vLLM: only when serving

    models = None
    if model is not None or engine is not None or max_model_len is not None:
        source = model or DEFAULT_MODEL
        # The bundled model's de-quantized Q4 weights answer badly in bfloat16 (vLLM's CPU default).
        dtype = "float32" if source == DEFAULT_MODEL else "auto"
        models = [ModelConfig(id=served_name or source, source=source, engine=engine or "vllm",
                              max_model_len=max_model_len, dtype=dtype)]
    try:
        settings = load_settings(config, host=host, port=port, api_key=api_key, log_level=log_level, models=models,
                                 drain_timeout_s=drain_timeout)
        if restart_engines is not None:
            restart = settings.engine_restart.model_copy(update={"enabled": restart_engines})
            settings = settings.model_copy(update={"engine_restart": restart})
    except Exception as exc:
        typer.echo(f"invalid settings: {exc}", err=True)
        raise typer.Exit(2)
    run_server(settings)
