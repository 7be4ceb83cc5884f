"""Token-level models loaded once per process and read at byte level by any number of recipes.

A `LoadedSource` holds what every request shares: the weights, the tokenizer, its byte view
(`TokenVocabulary`) and canonicality checker. Each request gets its own `ByteLM` (and its own
`TransformersLM` KV cache) from `byte_lm`, so requests never disturb each other's caches.
A `SourcePool` (one per model registry) loads each (path, dtype) once for all its readers.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

import torch

from ...decoding.bytelevel import ByteLM, CanonicalityChecker, TokenVocabulary, TransformersLM
from ...kernels.cpu_linear import install_small_batch_linears

__all__ = ["SourcePool", "load_source"]

log = logging.getLogger(__name__)

_CHECKER_CACHE_LIMIT = 200_000  # cached validity results kept between requests


@dataclass
class LoadedSource:
    path: str
    model: torch.nn.Module
    tokenizer: object  # a transformers fast tokenizer
    vocab: TokenVocabulary
    checker: CanonicalityChecker
    text_context: tuple[int, ...]  # tokens before a plain text: the tokenizer's own prefix, or BOS
    max_positions: int
    users: int = field(default=0, repr=False)

    def chat_context(self, messages, add_generation_prompt: bool, template_kwargs: dict | None) -> tuple[int, ...]:
        """The conversation rendered with this model's own chat template, as its token ids."""
        if not getattr(self.tokenizer, "chat_template", None):
            raise ValueError(f"{self.path} has no chat template")
        text = self.tokenizer.apply_chat_template(list(messages), tokenize=False,
                                                  add_generation_prompt=add_generation_prompt,
                                                  **(template_kwargs or {}))
        return tuple(self.tokenizer.encode(text, add_special_tokens=False))

    def byte_lm(self, context_ids: tuple[int, ...], min_token_prob: float = 0.0, max_branches: int | None = None,
                always_check: bytes = b"", **options) -> ByteLM:
        """A fresh ``ByteLM`` over this source; ``options``: ``ByteLM``'s other speed knobs."""
        if self.checker.cached_results > _CHECKER_CACHE_LIMIT:
            self.checker.clear_cache()
        lm = TransformersLM(self.model, vocab_size=self.model.config.vocab_size)
        return ByteLM(lm, self.vocab, self.checker, context_ids=context_ids, min_token_prob=min_token_prob,
                      max_branches=max_branches, always_check=always_check, **options)


def _torch_dtype(dtype: str) -> torch.dtype:
    if dtype == "auto":
        return torch.float32
    value = getattr(torch, dtype, None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"dtype: unknown torch dtype {dtype!r} (auto, float32, float64, bfloat16, float16)")
    return value


def _eos_ids(tokenizer, model) -> tuple[int, ...]:
    ids = [tokenizer.eos_token_id]
    generation = getattr(model, "generation_config", None)
    extra = getattr(generation, "eos_token_id", None) if generation is not None else None
    ids += extra if isinstance(extra, (list, tuple)) else [extra]
    return tuple(dict.fromkeys(int(i) for i in ids if i is not None))


def _text_context(tokenizer) -> tuple[int, ...]:
    own = tuple(tokenizer("", add_special_tokens=True)["input_ids"])
    if own:
        return own
    for token_id in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return (int(token_id),)
    raise ValueError("the tokenizer adds no prefix and names no BOS or EOS token to start a text with")


def load_source(path: str, dtype: str) -> LoadedSource:
    """Load a model for byte-level reading (unshared: servers go through a `SourcePool`)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=_torch_dtype(dtype)).eval()
    if count := install_small_batch_linears(model):  # branch rows batch a few at a time, as decode steps do
        log.info("%s: small-batch CPU path for %d float32 linear layers", path, count)
    eos = _eos_ids(tokenizer, model)
    if not eos:
        raise ValueError(f"{path}: the tokenizer names no EOS token, so a text could never end")
    try:
        vocab = TokenVocabulary.from_tokenizer(tokenizer, eos_ids=eos)
    except NotImplementedError as exc:
        raise ValueError(f"{path} cannot be read at byte level: {exc}") from exc
    checker = CanonicalityChecker(tokenizer, vocab)
    max_positions = int(getattr(model.config, "max_position_embeddings", None) or 2048)
    return LoadedSource(path, model, tokenizer, vocab, checker, _text_context(tokenizer), max_positions)


class SourcePool:
    """Loaded sources shared by their readers (byte-level engines, the prompt-boundary reader),
    each (path, dtype) loaded once and dropped when its last reader releases it."""

    def __init__(self) -> None:
        self._loaded: dict[tuple[str, str], LoadedSource] = {}
        self._lock = threading.Lock()

    def acquire(self, path: str, dtype: str) -> LoadedSource:
        """Load (or reuse) a model for byte-level reading; pair with `release`."""
        key = (path, dtype)
        with self._lock:
            source = self._loaded.get(key)
            if source is None:
                log.info("loading %s (%s) for byte-level decoding", path, dtype)
                source = load_source(path, dtype)
                self._loaded[key] = source
            source.users += 1
            return source

    def release(self, path: str, dtype: str) -> None:
        with self._lock:
            source = self._loaded.get((path, dtype))
            if source is not None:
                source.users -= 1
                if source.users <= 0:
                    del self._loaded[(path, dtype)]
