"""Prompts as the decoding methods need them: negative prompts and steered token positions.

The engine only sees token ids. A request's ``contrastive`` and ``steer`` blocks become the
engine's ``DecodingPlan`` (``api.protocol``: ``to_decoding_plan``) through a ``MethodPrompt``,
which builds, once per prompt, the negative branch's prompt (icd) and the steered positions: the
tokens the request's spans overlap (text prompts) or the prompt's image tokens (chat with images,
where spans are a 400 and ascd needs no steer block).
"""
from __future__ import annotations

import abc

from .chat_template import last_user_content_start, render_chat_text
from ..decoding.contrastive import DEFAULT_DISTURBANCE
from ..decoding.steering import span_token_positions
from ..api.errors import bad_request
from ..api.protocol import ContrastiveParams, SteerParams

__all__ = ["ChatPrompt", "CompletionPrompt", "MethodPrompt"]


class MethodPrompt(abc.ABC):
    """One prompt as the decoding methods need it. Derived prompts are built once and reused by
    every choice of the request."""

    token_ids: list[int]
    pixel_values = None  # prompts with images: the preprocessed images (a tensor)

    def __init__(self) -> None:
        self._negative: list[int] | None = None
        self._steered: list[int] | None = None

    def negative_ids(self, params: ContrastiveParams) -> list[int]:
        if self._negative is None:
            self._negative = self._build_negative(params)
        return self._negative

    def steered_positions(self, params: SteerParams, param: str = "steer") -> list[int]:
        """The steered prompt token positions: the tokens the spans overlap."""
        if params.spans is None:
            raise bad_request("steer on a text prompt needs spans: {\"spans\": [[start, end], ...]} (character "
                              "offsets; only chat prompts with images steer without spans: their image tokens)",
                              f"{param}.spans")
        if self._steered is None:
            text, base, length, offsets = self._text_and_offsets(param)
            for start, end in params.spans:
                if end > length:
                    raise bad_request(f"steer span [{start}, {end}] ends past the text it refers to "
                                      f"({length} characters)", f"{param}.spans")
            self._steered = span_token_positions(offsets, [(base + a, base + b) for a, b in params.spans])
            if not self._steered:
                raise bad_request("the steer spans cover no prompt tokens", f"{param}.spans")
        return self._steered

    @abc.abstractmethod
    def _build_negative(self, params: ContrastiveParams) -> list[int]:
        ...

    @abc.abstractmethod
    def _text_and_offsets(self, param: str) -> tuple[str, int, int, list[tuple[int, int]]]:
        """(prompt text, where span offsets start in it, how many characters they may address,
        character range of each prompt token)."""


class CompletionPrompt(MethodPrompt):
    """A /v1/completions prompt: text (tokenized as usual) or token ids."""

    def __init__(self, tokenizer, prompt: str | list[int]):
        super().__init__()
        self.tokenizer, self.source = tokenizer, prompt
        self.token_ids = tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)

    def _build_negative(self, params: ContrastiveParams) -> list[int]:
        if params.negative_system_prompt is not None:
            raise bad_request("negative_system_prompt is for chat; completions take negative_prompt",
                              "contrastive.negative_system_prompt")
        if params.negative_prompt is not None:
            ids = self.tokenizer.encode(params.negative_prompt)
        elif isinstance(self.source, str):
            ids = self.tokenizer.encode(f"{DEFAULT_DISTURBANCE}\n{self.source}")
        else:
            ids = self.tokenizer.encode(f"{DEFAULT_DISTURBANCE}\n", add_special_tokens=False) + self.token_ids
        if not ids:
            raise bad_request("negative_prompt must contain at least one token", "contrastive.negative_prompt")
        return ids

    def _text_and_offsets(self, param: str) -> tuple[str, int, int, list[tuple[int, int]]]:
        if not isinstance(self.source, str):
            raise bad_request("steer spans are character offsets into a text prompt; this prompt is token ids",
                              f"{param}.spans")
        offsets = _offsets(self.tokenizer, self.source, self.token_ids, True, param)
        return self.source, 0, len(self.source), offsets


class ChatPrompt(MethodPrompt):
    """A /v1/chat/completions conversation, rendered with the model's chat template. Steer spans
    are offsets into the last user message."""

    def __init__(self, tokenizer, turns: list[dict[str, str]], add_generation_prompt: bool,
                 template_kwargs: dict | None):
        super().__init__()
        self.tokenizer, self.turns = tokenizer, turns
        self.add_generation_prompt, self.template_kwargs = add_generation_prompt, template_kwargs
        self.text = render_chat_text(tokenizer, turns, add_generation_prompt, template_kwargs)
        self.token_ids = tokenizer.encode(self.text, add_special_tokens=False)

    def _build_negative(self, params: ContrastiveParams) -> list[int]:
        if params.negative_prompt is not None:
            raise bad_request("chat takes negative_system_prompt; negative_prompt is for completions",
                              "contrastive.negative_prompt")
        system = {"role": "system", "content": params.negative_system_prompt or DEFAULT_DISTURBANCE}
        rest = self.turns[1:] if self.turns and self.turns[0]["role"] == "system" else self.turns
        text = render_chat_text(self.tokenizer, [system, *rest], self.add_generation_prompt, self.template_kwargs)
        return self.tokenizer.encode(text, add_special_tokens=False)

    def _text_and_offsets(self, param: str) -> tuple[str, int, int, list[tuple[int, int]]]:
        base = last_user_content_start(self.tokenizer, self.turns, self.text, self.template_kwargs)
        last_user = [t for t in self.turns if t["role"] == "user"][-1]["content"]
        offsets = _offsets(self.tokenizer, self.text, self.token_ids, False, param)
        return self.text, base, len(last_user), offsets


def _offsets(tokenizer, text: str, token_ids: list[int], add_special_tokens: bool,
             param: str) -> list[tuple[int, int]]:
    if not getattr(tokenizer, "is_fast", False):
        raise bad_request("steer needs a fast tokenizer (character offsets); this model's is not", param)
    enc = tokenizer(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
    if list(enc["input_ids"]) != list(token_ids):
        raise bad_request("cannot map steer spans: the tokenizer's offsets disagree with the prompt tokens", param)
    return [tuple(o) for o in enc["offset_mapping"]]
