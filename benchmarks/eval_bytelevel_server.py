"""Scoring texts through the server: a `braid serve` with the two bundled models read at byte
level and their mix/product ensembles, and ``/v1/completions`` with ``echo``, ``logprobs=0``,
``max_tokens=0`` through the official openai client (per-byte logprobs of the prompt, summed)."""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from server_process import start_server, stop_server  # noqa: E402

__all__ = ["score_through_server", "server_config"]


def server_config(names: dict[str, str], min_token_prob: float) -> dict:
    """Model ids ``smollm2``/``gemma`` (bytelevel) and ``mix``/``product`` (ensembles of those two)."""
    import platformdirs

    home = os.environ.get("BRAID_HOME") or platformdirs.user_cache_dir("braid")  # the converted models
    members = [{"model": key, "weight": 0.5} for key in names]
    models = [{"id": key, "kind": "bytelevel", "source": source, "min_token_prob": min_token_prob}
              for key, source in names.items()]
    models += [{"id": mode, "kind": "ensemble", "mode": mode, "members": members} for mode in ("mix", "product")]
    return {"home": home, "models": models}


def score_through_server(names: dict[str, str], chunks: list[bytes], min_token_prob: float,
                         threads: int = 0) -> dict[str, list]:
    """Negative log-likelihood (nats) of each chunk under each served model id; an error
    message instead where the server answers 400 (e.g. a prompt it gives probability zero). ``threads``: the
    server's OMP_NUM_THREADS / MKL_NUM_THREADS (0: torch's default)."""
    import openai

    with tempfile.TemporaryDirectory(prefix="braid-eval-") as workdir:
        env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)} if threads else None
        handle = start_server(server_config(names, min_token_prob), Path(workdir), timeout=900, env=env)
        try:
            client = openai.OpenAI(base_url=handle.base_url, api_key="none", max_retries=0, timeout=3600)
            nats: dict[str, list[float]] = {}
            ids = list(names) + ["mix", "product"]
            with tqdm(total=len(ids) * len(chunks), desc="bits per byte (server)", unit="chunk") as bar:
                for model in ids:
                    nats[model] = []
                    for chunk in chunks:
                        try:
                            out = client.completions.create(model=model, prompt=chunk.decode("utf-8"), echo=True,
                                                            logprobs=0, max_tokens=0)
                        except openai.BadRequestError as err:
                            nats[model].append(f"400: {err.body.get('message', err) if err.body else err}")
                            bar.update()
                            continue
                        logprobs = out.choices[0].logprobs.token_logprobs
                        if len(logprobs) != len(chunk) or any(lp is None for lp in logprobs):
                            raise RuntimeError(f"{model}: expected {len(chunk)} per-byte logprobs, got "
                                               f"{len(logprobs)} ({logprobs[:3]}...)")
                        nats[model].append(-float(sum(logprobs)))
                        bar.update()
            return nats
        finally:
            stop_server(handle)
