"""Request and response shapes of tool calling and structured outputs (OpenAI's and vLLM's).

``response_format`` and ``tools`` / ``tool_choice`` follow OpenAI's chat API; ``structured_outputs``
is vLLM's extension (same names and shapes as vLLM's server, sent with ``extra_body``).
"""
from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator



class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    json_schema: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> "ResponseFormat":
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("type 'json_schema' needs a json_schema object: {\"name\": ..., \"schema\": {...}}")
        return self


class StructuredOutputsRequest(BaseModel):
    """vLLM's ``structured_outputs``: exactly one constraint, plus whitespace options."""

    model_config = ConfigDict(extra="forbid")

    json_: str | dict[str, Any] | None = Field(None, alias="json")
    regex: str | None = None
    choice: list[str] | None = Field(None, min_length=1)
    grammar: str | None = None
    json_object: bool | None = None
    structural_tag: str | dict[str, Any] | None = None
    disable_any_whitespace: bool = False
    disable_additional_properties: bool = False
    whitespace_pattern: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "StructuredOutputsRequest":
        given = [name for name in ("json_", "regex", "choice", "grammar", "json_object", "structural_tag")
                 if getattr(self, name) is not None]
        if len(given) != 1:
            names = [name.rstrip("_") for name in given]
            raise ValueError("give exactly one constraint of json, regex, choice, grammar, json_object, "
                             f"structural_tag (got {names or 'none'})")
        return self

    def schema_text(self) -> str | None:
        if self.json_ is None:
            return None
        return self.json_ if isinstance(self.json_, str) else json.dumps(self.json_)


class FunctionDefinition(BaseModel):
    name: str = Field(pattern=r"^[a-zA-Z0-9_.-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ChatCompletionTool(BaseModel):
    type: Literal["function"] = "function"
    function: FunctionDefinition


class NamedFunction(BaseModel):
    name: str


class NamedToolChoice(BaseModel):
    type: Literal["function"] = "function"
    function: NamedFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class FunctionCall(BaseModel):
    name: str
    arguments: str


class ToolCallItem(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


def _unset(value: Any) -> bool:
    return value is None


class DeltaFunctionCall(BaseModel):
    """A streamed piece of a call: the name once, then pieces of the arguments (OpenAI omits the rest)."""

    name: str | None = Field(None, exclude_if=_unset)
    arguments: str | None = Field(None, exclude_if=_unset)


class DeltaToolCall(BaseModel):
    index: int
    id: str | None = Field(None, exclude_if=_unset)
    type: Literal["function"] | None = Field(None, exclude_if=_unset)
    function: DeltaFunctionCall | None = Field(None, exclude_if=_unset)
