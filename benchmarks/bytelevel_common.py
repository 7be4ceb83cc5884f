"""Shared parts of the byte-level benchmark and evaluation: the bundled models loaded the way
the byte-level engine loads them, greedy decoding loops, the machine line, confidence intervals."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from braid.server.decoding.bytelevel import END, ByteLM, CharLM, TransformersLM
from braid.server.decoding.bytelevel.char_lm import END_OF_TEXT

__all__ = ["Model", "KNOBS_HELP", "parse_knobs", "knobs_label", "load_model", "token_greedy", "byte_greedy",
           "char_greedy", "mean_ci", "wilson_ci", "BUNDLED_PAIR"]

BUNDLED_PAIR = ("smollm2-135m-instruct", "gemma-3-270m")


@dataclass
class Model:
    name: str
    source: object  # braid.server.engines.bytelevel.sources.LoadedSource

    @property
    def text_context(self) -> tuple[int, ...]:
        """Tokens before a plain text (as the server reads a completion prompt)."""
        return tuple(self.source.text_context)

    def encode(self, text: str) -> tuple[int, ...]:
        return tuple(self.source.tokenizer.encode(text, add_special_tokens=False))

    def byte_lm(self, context_ids=None, min_token_prob: float = 0.0, max_branches: int | None = None,
                always_check=b"", **options) -> ByteLM:
        """A fresh `ByteLM` (own KV cache) after ``context_ids`` (default: the text context);
        ``options``: `ByteLM`'s other speed knobs."""
        lm = TransformersLM(self.source.model, vocab_size=self.source.model.config.vocab_size)
        return ByteLM(lm, self.source.vocab, self.source.checker, context_ids=context_ids or self.text_context,
                      min_token_prob=min_token_prob, max_branches=max_branches, always_check=always_check, **options)

    @torch.no_grad()
    def token_logprob(self, context_ids, text: str) -> tuple[float, int]:
        """Token-level log P(the tokenizer's encoding of ``text`` | context), and its token count."""
        ids = list(context_ids) + list(self.encode(text))
        logits = self.source.model(input_ids=torch.tensor([ids])).logits[0].double().log_softmax(-1)
        n = len(context_ids)
        return float(logits[torch.arange(n - 1, len(ids) - 1), torch.tensor(ids[n:])].sum()), len(ids) - n


KNOBS_HELP = ("MIN_TOKEN_PROB[:MAX_BRANCHES[:SHARE[:LOOKAHEAD]]]: tokens below MIN_TOKEN_PROB are not checked for "
              "canonicality (masked; with SHARE kept, and branches below SHARE x the most likely one dropped); "
              "the cover keeps the MAX_BRANCHES most likely branches (empty: no cap); LOOKAHEAD: rows run ahead "
              "per forward (default ByteLM's; 0 off; the same distributions)")


def parse_knobs(spec: str) -> dict:
    """``ByteLM`` keyword arguments from MIN_TOKEN_PROB[:MAX_BRANCHES[:SHARE[:LOOKAHEAD]]]."""
    knob, branches, share, lookahead = (spec.split(":") + ["", "", ""])[:4]
    knobs = {"min_token_prob": float(knob), "max_branches": int(branches) if branches else None,
             "unchecked": "keep" if share else "mask", "min_branch_share": float(share) if share else 0.0}
    if lookahead:
        knobs["lookahead"] = int(lookahead)
    return knobs


def knobs_label(spec: str) -> str:
    knobs = parse_knobs(spec)
    text = f"min_token_prob={spec.split(':')[0]}" + (", unchecked=keep" if knobs["unchecked"] == "keep" else "")
    text += f", max_branches={knobs['max_branches']}" if knobs["max_branches"] else ""
    text += f", min_branch_share={spec.split(':')[2]}" if knobs["min_branch_share"] else ""
    return text + (f", lookahead={knobs['lookahead']}" if "lookahead" in knobs else "")


def load_model(name: str, home: Path | None = None) -> Model:
    """A bundled model (converted once into ``$BRAID_HOME/models``), float32, read at byte level."""
    import platformdirs

    from braid.server.engines.bytelevel.sources import load_source
    from braid.server.models.weights import resolve_source

    home = home or Path(os.environ.get("BRAID_HOME") or platformdirs.user_cache_dir("braid"))
    return Model(name, load_source(resolve_source(name, home), "float32"))


@torch.no_grad()
def token_greedy(model: Model, context_ids, n_chars: int) -> tuple[str, int]:
    """Plain token-level greedy decoding (KV cache, one forward per token) until ``n_chars``
    characters or EOS: (text, tokens generated)."""
    net, tokenizer, eos = model.source.model, model.source.tokenizer, set(model.source.vocab.eos_ids)
    ids, past, out, text = torch.tensor([list(context_ids)]), None, [], ""
    while len(text) < n_chars:
        result = net(input_ids=ids, past_key_values=past, use_cache=True)
        past, token = result.past_key_values, int(result.logits[0, -1].argmax())
        if token in eos:
            break
        out.append(token)
        ids = torch.tensor([[token]])
        text = tokenizer.decode(out)
    return text, len(out)


def byte_greedy(lm, n_chars: int, prefix: bytes = b"") -> str:
    """Greedy over bytes (the most likely next byte each step) with any byte-level LM, until
    ``n_chars`` whole characters or END."""
    out = b""
    while len(out.decode("utf-8", "ignore")) < n_chars:
        symbol = int(np.argmax(lm.next_byte_logprobs(prefix + out)))
        if symbol == END:
            break
        out += bytes([symbol])
    return out.decode("utf-8", "replace")


def char_greedy(char_lm: CharLM, n_chars: int) -> str:
    """Greedy over characters, exactly: a multi-byte character is expanded only while its lead
    byte is at least as likely as the best single-byte outcome (its probability is at most that)."""
    text = ""
    while len(text) < n_chars:
        by_byte = char_lm.byte_lm.next_byte_logprobs(text.encode("utf-8"))
        best_single = float(max(by_byte[:128].max(), by_byte[END]))
        dist = char_lm.next_char_logprobs(text, min_logprob=best_single)
        choice = max(dist, key=dist.get)
        if choice == END_OF_TEXT:
            break
        text += choice
    return text


def mean_ci(values, weights=None, resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """(weighted mean, 95% bootstrap interval) over items."""
    values = np.asarray(values, dtype=np.float64)
    weights = np.ones_like(values) if weights is None else np.asarray(weights, dtype=np.float64)
    mean = float((values * weights).sum() / weights.sum())
    if len(values) < 2:
        return mean, mean, mean
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(values), size=(resamples, len(values)))
    boots = (values[picks] * weights[picks]).sum(1) / weights[picks].sum(1)
    return mean, float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))


def wilson_ci(successes: int, n: int) -> tuple[float, float, float]:
    """(proportion, 95% Wilson score interval)."""
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    z, p = 1.959964, successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return p, centre - half, centre + half


class Stopwatch:
    def __init__(self):
        self.seconds = 0.0

    def __enter__(self):
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds += time.perf_counter() - self._start
