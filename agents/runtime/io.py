"""What a workflow takes and gives, the same on every surface: inputs (text, images, structured
fields) and outputs (an answer, structured fields, files)."""
from __future__ import annotations

import json
import mimetypes
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["Artifact", "InputError", "WorkflowInput", "WorkflowOutput"]


class InputError(ValueError):
    """An input a workflow cannot take; the message says what is wrong."""


class WorkflowInput(BaseModel):
    """A text request, optionally with images (data URIs, file paths or file:// URLs).

    Workflows that take structured objects (a query and documents, a study) subclass this and add
    fields; from text they are then read as JSON.
    """

    model_config = ConfigDict(extra="forbid")

    text: str = Field("", description="The request, e.g. a problem to solve.")
    images: list[str] = Field(default_factory=list, description="Images: data URIs, paths or file:// URLs.")

    @classmethod
    def from_text(cls, text: str) -> Self:
        """From a command line or a chat message: JSON when it is a JSON object, else the text itself."""
        stripped = text.strip()
        if stripped.startswith("{"):
            try:
                data = json.loads(stripped)
            except ValueError:
                data = None
            if isinstance(data, dict):
                return cls.from_mapping(data)
        return cls.from_mapping({"text": text})

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> Self:
        try:
            value = cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in exc.errors())
            raise InputError(f"invalid input: {problems}") from None
        value.check()
        return value

    @classmethod
    def from_messages(cls, messages: list[dict[str, Any]]) -> Self:
        """From an OpenAI chat conversation: the last user message's text and images."""
        user = [m for m in messages if m.get("role") == "user"]
        if not user:
            raise InputError("the conversation has no user message: a workflow runs on the last user message")
        content = user[-1].get("content")
        if isinstance(content, str):
            return cls.from_text(content)
        texts, images = [], []
        for part in content or []:
            if part.get("type") == "text":
                texts.append(part.get("text", ""))
            elif part.get("type") == "image_url":
                url = part.get("image_url")
                images.append(url.get("url") if isinstance(url, dict) else url)
        value = cls.from_text("\n".join(texts))
        if images:
            value = value.model_copy(update={"images": [*value.images, *images]})
        return value

    def check(self) -> None:
        """Workflow-specific checks beyond the schema (override); raise InputError."""
        if not self.text.strip() and not self.images:
            raise InputError("empty input: give the workflow a text (or images) to work on")


class Artifact(BaseModel):
    """A file a run produced (a plot, an overlay, an HTML report), kept under the run's files folder."""

    name: str
    path: str
    media_type: str = "application/octet-stream"

    @classmethod
    def write(cls, folder: Path, name: str, data: bytes | str, media_type: str | None = None) -> "Artifact":
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / Path(name).name
        target.write_bytes(data.encode() if isinstance(data, str) else data)
        kind = media_type or mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        return cls(name=target.name, path=str(target), media_type=kind)

    def read(self) -> bytes:
        return Path(self.path).read_bytes()


class WorkflowOutput(BaseModel):
    """The final output: `answer` is what a chat surface shows; subclasses add structured fields."""

    answer: str = Field(description="The final answer as text.")
    files: list[Artifact] = Field(default_factory=list, description="Files the run produced.")
