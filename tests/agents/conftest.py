"""What the agents tests share: a real Braid server with the bundled SmolLM2 (transformers engine,
greedy), and the `example` workflow's config pointed at it."""
from __future__ import annotations

import pytest

from example_setup import smollm2_settings
from server_process import start_server, stop_server


@pytest.fixture(scope="session")
def smollm2_server(tmp_path_factory):
    handle = start_server(smollm2_settings(), tmp_path_factory.mktemp("agents-smollm2"), timeout=420)
    yield handle
    stop_server(handle)


@pytest.fixture
def agents_home(tmp_path, monkeypatch):
    """A fresh BRAID_HOME for run records and checkpoints (models stay in the machine's cache)."""
    home = tmp_path / "braid-home"
    monkeypatch.setenv("BRAID_HOME", str(home))
    return home
