"""What the agents tests share: a real Braid server with the bundled SmolLM2 (transformers engine,
greedy), and the `example` workflow's config pointed at it."""
from __future__ import annotations

import os

import platformdirs
import pytest

from server_process import start_server, stop_server

MODEL = "smollm2"
QUESTION = "Use the calculator to compute 37 * 91."


# The converted model is cached per machine (BRAID_HOME or the user cache), as for users; read once,
# before any test points BRAID_HOME at its own folder for run records.
MODEL_HOME = os.environ.get("BRAID_HOME") or platformdirs.user_cache_dir("braid")


def smollm2_settings() -> dict:
    return {"home": MODEL_HOME, "models": [{"id": MODEL, "source": "smollm2-135m-instruct", "engine": "transformers",
                                      "dtype": "float32"}]}


@pytest.fixture(scope="session")
def smollm2_server(tmp_path_factory):
    handle = start_server(smollm2_settings(), tmp_path_factory.mktemp("agents-smollm2"), timeout=420)
    yield handle
    stop_server(handle)


def example_config(base_url: str, **overrides) -> dict:
    """The example workflow on `base_url`: greedy, a short answer."""
    return {"roles": {"assistant": {"base_url": base_url, "model": MODEL, "max_tokens": 96}},
            "answer_max_tokens": 16, **overrides}


@pytest.fixture
def agents_home(tmp_path, monkeypatch):
    """A fresh BRAID_HOME for run records and checkpoints (models stay in the machine's cache)."""
    home = tmp_path / "braid-home"
    monkeypatch.setenv("BRAID_HOME", str(home))
    return home
