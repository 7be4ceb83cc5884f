from __future__ import annotations

import pytest

from braid.memory import HashingEmbedder, SentenceTransformerEmbedder, Store


@pytest.fixture
def store(tmp_path):
    """A fresh store with the model-free hashing embedder."""
    s = Store.open(tmp_path / "mem", embedder=HashingEmbedder())
    yield s
    s.close()


@pytest.fixture(scope="session")
def minilm():
    """The bundled all-MiniLM-L6-v2, loaded once (offline)."""
    embedder = SentenceTransformerEmbedder()
    embedder.embed(["warm up"])
    return embedder
