"""Chat messages -> the model's chat template -> prompt text and token ids."""
from __future__ import annotations

from ..api.errors import bad_request
from ..api.protocol import ChatMessage

__all__ = ["conversation", "render_chat"]


def _text_content(message: ChatMessage, index: int) -> str | None:
    if message.content is None or isinstance(message.content, str):
        return message.content
    texts = []
    for part in message.content:
        kind = part.get("type")
        if kind == "text":
            texts.append(str(part.get("text", "")))
        elif kind in ("image_url", "input_image", "image"):
            raise bad_request("this model does not accept image inputs", f"messages[{index}].content")
        else:
            raise bad_request(f"unsupported content part type {kind!r}", f"messages[{index}].content")
    return "".join(texts)


def conversation(messages: list[ChatMessage]) -> list[dict[str, str]]:
    """Messages as the ``{"role", "content"}`` dicts chat templates take (``developer`` -> ``system``)."""
    return [{"role": "system" if m.role == "developer" else m.role, "content": _text_content(m, i) or ""}
            for i, m in enumerate(messages)]


def render_chat_text(tokenizer, turns: list[dict[str, str]], add_generation_prompt: bool = True,
                     template_kwargs: dict | None = None) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise bad_request("this model has no chat template; use /v1/completions", "messages")
    try:
        return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=add_generation_prompt,
                                             **(template_kwargs or {}))
    except Exception as exc:  # template errors are the caller's (e.g. roles out of order)
        raise bad_request(f"the chat template rejected these messages: {exc}", "messages") from exc


def render_chat(tokenizer, messages: list[ChatMessage], add_generation_prompt: bool = True,
                template_kwargs: dict | None = None) -> list[int]:
    text = render_chat_text(tokenizer, conversation(messages), add_generation_prompt, template_kwargs)
    return tokenizer.encode(text, add_special_tokens=False)


def last_user_content_start(tokenizer, turns: list[dict[str, str]], text: str,
                            template_kwargs: dict | None = None) -> int:
    """Character offset in the rendered ``text`` where the last user message's content begins.

    The conversation up to that message, rendered alone, is a prefix of ``text`` in ordinary
    templates; the content is the last occurrence of itself in that prefix.
    """
    last = max((i for i, t in enumerate(turns) if t["role"] == "user"), default=None)
    if last is None:
        raise bad_request("steer spans on chat refer to the last user message, and there is none", "steer.spans")
    content = turns[last]["content"]
    prefix = render_chat_text(tokenizer, turns[:last + 1], False, template_kwargs)
    start = prefix.rfind(content)
    if not content or start < 0 or not text.startswith(prefix[:start + len(content)]):
        raise bad_request("cannot locate the last user message in this model's chat template", "steer.spans")
    return start
