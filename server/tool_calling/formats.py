"""The tool-call formats by name: a served model's ``tool_call_format`` picks one."""
from __future__ import annotations

from typing import Literal

from .base import ToolCallFormat
from .hermes import HermesFormat
from .llama3_json import Llama3JsonFormat

__all__ = ["DEFAULT_TOOL_CALL_FORMAT", "TOOL_CALL_FORMATS", "ToolCallFormatName", "get_tool_call_format"]

ToolCallFormatName = Literal["hermes", "llama3_json"]
"""For a served-model config field; `get_tool_call_format` turns it into the format."""
DEFAULT_TOOL_CALL_FORMAT: ToolCallFormatName = "hermes"
TOOL_CALL_FORMATS: dict[str, ToolCallFormat] = {fmt.name: fmt for fmt in (HermesFormat(), Llama3JsonFormat())}


def get_tool_call_format(name: str = DEFAULT_TOOL_CALL_FORMAT) -> ToolCallFormat:
    try:
        return TOOL_CALL_FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown tool_call_format {name!r}; choose one of {sorted(TOOL_CALL_FORMATS)}") from None
