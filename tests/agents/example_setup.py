"""The agents tests' shared setup: the bundled SmolLM2 served greedily, and the `example` workflow's
config pointed at it (imported by the tests; `conftest.py` holds the fixtures)."""
from __future__ import annotations

import os

import platformdirs

__all__ = ["MODEL", "QUESTION", "example_config", "smollm2_settings"]

MODEL = "smollm2"
QUESTION = "Use the calculator to compute 37 * 91."

# The converted model is cached per machine (BRAID_HOME or the user cache), as for users; read once,
# before any test points BRAID_HOME at its own folder for run records.
MODEL_HOME = os.environ.get("BRAID_HOME") or platformdirs.user_cache_dir("braid")


def smollm2_settings() -> dict:
    return {"home": MODEL_HOME, "models": [{"id": MODEL, "source": "smollm2-135m-instruct",
                                            "engine": "transformers", "dtype": "float32"}]}


def example_config(base_url: str, **overrides) -> dict:
    """The example workflow on `base_url`: greedy, a short answer."""
    return {"roles": {"assistant": {"base_url": base_url, "model": MODEL, "max_tokens": 96}},
            "answer_max_tokens": 16, **overrides}
