"""Automatic head selection for steering (``"heads": "auto"``).

Profiling: the model reads a fixed set of probe prompts, each a context (the steered span)
followed by a question about it. For every layer and head, over the query rows after the span,
we take the mean attention *per key* on the text keys (not steered, not position 0, the attention
sink) and on the steered keys, and score the head by ``log(text per key / steered per key)``,
averaged over rows and probes. ``"auto"`` picks the ``k`` highest-scoring heads (``k`` capped at
the model's heads): heads that favour the surrounding text over the span are those that steering
should redirect (ASCD's text-centric heads).

Image prompts (ASCD or ``steer`` on a vision-language model, whose steered tokens are the image
tokens) use the same ranking, profiled on these text probes through the language model: Braid
ships no probe images, and a head that favours the surrounding text over a steered block of context
is the text-centric head ASCD redirects toward the image. Pass explicit heads (or ``"all"``) to
steer others.

Computed once per model: kept in memory by the engine and, when the engine knows Braid's cache
root (``Engine.cache_home``, i.e. ``BRAID_HOME``), on disk at ``steering/heads-<key>.json``, where
``key`` hashes the probes, the model's config and tokenizer files, and its weight files' names,
sizes and modification times.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import torch

from ...decoding.steering import span_token_positions
from .model_runner import ModelRunner

log = logging.getLogger(__name__)

PROFILE_VERSION = 1
# (context = the steered span, question). Counterfactual contexts: the answer is only in the span.
PROBES = [
    ("In this story, the capital of France is Lyon.", "What is the capital of France?"),
    ("The meeting was moved from Monday to Thursday at noon.", "When is the meeting?"),
    ("Anna's cat is called Pepper and it sleeps on the piano.", "Where does the cat sleep?"),
    ("The red box holds seven apples and the blue box holds two.", "How many apples are in the red box?"),
    ("According to the note, the password is river-42.", "What is the password?"),
    ("The train to Oslo leaves from platform nine.", "Which platform does the train leave from?"),
]
_EPS = 1e-9


def probe_prompts(tokenizer) -> list[tuple[list[int], list[int]]]:
    """``(token ids, steered positions)`` of each probe, tokenized as a completions prompt."""
    out = []
    for context, question in PROBES:
        text = f"Context: {context}\nQuestion: {question}\nAnswer:"
        start = text.index(context)
        enc = tokenizer(text, add_special_tokens=True, return_offsets_mapping=True)
        steered = span_token_positions(enc["offset_mapping"], [(start, start + len(context))])
        out.append((list(enc["input_ids"]), steered))
    return out


def head_scores_from_probs(probs: torch.Tensor, steered: list[int]) -> torch.Tensor:
    """``probs`` [H, n, n] attention of one probe in one layer -> [H] log(text / steered) per key."""
    n = probs.shape[-1]
    probs = probs.double()
    rows = torch.arange(max(steered) + 1, n)
    is_steered = torch.zeros(n, dtype=torch.bool)
    is_steered[steered] = True
    keys = torch.arange(n)
    text = (keys[None, :] >= 1) & (keys[None, :] <= rows[:, None]) & ~is_steered[None, :]  # [R, n]
    p = probs[:, rows]  # [H, R, n]
    text_per_key = (p * text).sum(-1) / text.sum(-1).clamp(min=1)
    steered_per_key = p[..., is_steered].sum(-1) / len(steered)
    return ((text_per_key + _EPS).log() - (steered_per_key + _EPS).log()).mean(-1)


class HeadProfile:
    """The model's heads ranked for steering; see the module docstring."""

    def __init__(self, runner: ModelRunner, tokenizer, model_path: str, num_layers: int, num_heads: int):
        self.runner, self.tokenizer, self.model_path = runner, tokenizer, model_path
        self.num_layers, self.num_heads = num_layers, num_heads
        self._ranking: list[tuple[int, int, float]] | None = None

    def top(self, k: int, cache_home: Path | None = None) -> list[tuple[int, int]]:
        return [(layer, head) for layer, head, _ in self.ranking(cache_home)[:min(k, self.num_layers * self.num_heads)]]

    def ranking(self, cache_home: Path | None = None) -> list[tuple[int, int, float]]:
        """``[(layer, head, score), ...]``, best first."""
        if self._ranking is None:
            path = self._cache_path(cache_home)
            if path is not None and path.is_file():
                self._ranking = [tuple(r) for r in json.loads(path.read_text())["ranking"]]
                log.info("steering heads of %s loaded from %s", self.model_path, path)
            else:
                self._ranking = self._profile()
                if path is not None:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    tmp = path.with_suffix(".tmp")
                    tmp.write_text(json.dumps({"model_path": self.model_path, "ranking": self._ranking}))
                    tmp.replace(path)
                    log.info("steering heads of %s cached at %s", self.model_path, path)
        return self._ranking

    def _profile(self) -> list[tuple[int, int, float]]:
        if not getattr(self.tokenizer, "is_fast", False):
            raise ValueError("automatic head selection needs a fast tokenizer (character offsets)")
        began = time.monotonic()
        total = torch.zeros(self.num_layers, self.num_heads, dtype=torch.float64)
        probes = probe_prompts(self.tokenizer)
        for ids, steered in probes:
            def record(layer_idx: int, scores: torch.Tensor, steered=steered) -> torch.Tensor:
                total[layer_idx] += head_scores_from_probs(scores.softmax(-1).cpu(), steered)
                return scores

            self.runner.forward_alone(ids, record)
        scores = (total / len(probes)).tolist()
        ranking = sorted(((layer, head, scores[layer][head]) for layer in range(self.num_layers)
                          for head in range(self.num_heads)), key=lambda r: -r[2])
        log.info("profiled %d attention heads of %s in %.2fs", len(ranking), self.model_path,
                 time.monotonic() - began)
        return ranking

    def _cache_path(self, cache_home: Path | None) -> Path | None:
        folder = Path(self.model_path)
        if cache_home is None or not folder.is_dir():
            return None
        digest = hashlib.sha256(json.dumps([PROFILE_VERSION, PROBES]).encode())
        for item in sorted(folder.iterdir()):
            if item.name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
                digest.update(item.name.encode() + item.read_bytes())
            elif item.suffix in (".safetensors", ".bin", ".gguf", ".pt"):
                stat = item.stat()
                digest.update(f"{item.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        return Path(cache_home) / "steering" / f"heads-{digest.hexdigest()[:24]}.json"
