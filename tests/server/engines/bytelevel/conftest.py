"""One real `braid serve` with byte-level models, ensembles and proxy-tuning over tiny models with
two different tokenizers, and the same models built in the test process with the library."""
from __future__ import annotations

import pytest

from server_process import start_server, stop_server

from bytelevel_reference import ReferenceSources
from bytelevel_server_settings import bytelevel_settings


@pytest.fixture(scope="session")
def tiny_sentencepiece_dir(tmp_path_factory):
    from tiny_models import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-sentencepiece"), seed=1, vocab_size=300,
                            tokenizer="sentencepiece")


@pytest.fixture(scope="session")
def tiny_anti_dir(tmp_path_factory):
    from tiny_models import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-anti"), seed=3)


@pytest.fixture(scope="session")
def bytelevel_server(tiny_llama_dir, tiny_sentencepiece_dir, tiny_anti_dir, tmp_path_factory):
    settings = bytelevel_settings(tiny_llama_dir, tiny_sentencepiece_dir, tiny_anti_dir)
    # one torch thread: these models are tiny, and the suite shares a small machine
    handle = start_server(settings, tmp_path_factory.mktemp("server-bytelevel"), env={"OMP_NUM_THREADS": "1"})
    yield handle
    stop_server(handle)


@pytest.fixture(scope="session")
def references(tiny_llama_dir, tiny_sentencepiece_dir, tiny_anti_dir) -> ReferenceSources:
    return ReferenceSources(tiny_llama_dir, tiny_sentencepiece_dir, tiny_anti_dir)
