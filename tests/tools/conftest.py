from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # mcp_harness
sys.path.insert(0, str(Path(__file__).parents[1] / "clients"))  # fake_openai_server

from mcp_harness import TRANSPORTS  # noqa: E402


@pytest.fixture(params=TRANSPORTS)
def transport(request) -> str:
    return request.param
