"""Request-level parts of the decoding methods: negative prompts, steered token positions, capabilities.

The engine only sees token ids. Here the ``contrastive`` and ``steer`` blocks of a request become
``SamplingSpec.extra`` entries an engine can run:

* ``extra["contrastive"] = {"method", "alpha", "beta", "negative_prompt_ids"}``, plus for ASCD
  ``"steer"`` (a steer dict as below; ``negative_prompt_ids`` is then the prompt itself).
* ``extra["steer"] = {"positions", "heads", "auto_heads", "strength", "negative_strength",
  "negative_fraction"}``: prompt token positions, ``"all"`` / ``"auto"`` / ``[(layer, head), ...]``
  and the strengths; standalone steering of the (single) sequence. The positions are the tokens
  the request's spans overlap (text prompts) or the prompt's image tokens (chat with images, where
  spans are a 400 and ASCD needs no steer block).
* VCD: ``extra["contrastive"]`` with ``"noise_step"``, ``negative_prompt_ids`` the prompt itself.
* ``extra["images"]``: the prompt's preprocessed ``pixel_values`` (chat with images).

Engines advertise what they run in ``Engine.capabilities``: ``"steer"`` and ``"contrastive.<method>"``.
A request asking for anything else is a 400 that names what would work.
"""
from __future__ import annotations

import abc
from typing import Any

from .chat_template import last_user_content_start, render_chat_text
from ..decoding.steering import span_token_positions
from ..engines.base import Engine
from ..api.errors import bad_request
from ..api.protocol import DEFAULT_DISTURBANCE, ContrastiveParams, SteerParams, _SamplingFields

__all__ = ["ChatPrompt", "CompletionPrompt", "MethodPrompt", "branch_prompt_tokens", "method_extras"]

_EXTENSION_BLOCKS = ("contrastive", "steer")


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


def _check_capabilities(request: _SamplingFields, engine: Engine) -> None:
    caps = engine.capabilities
    asked = [name for name in _EXTENSION_BLOCKS if getattr(request, name) is not None]
    missing = sorted(set(asked) - {cap.split(".")[0] for cap in caps})
    if missing:
        raise bad_request(f"model {request.model!r} runs on an engine that cannot do {missing}; "
                          "serve it with engine 'transformers' to use these decoding methods", missing[0])
    method = request.contrastive.method if request.contrastive is not None else None
    if method is None or f"contrastive.{method}" in caps:
        return
    available = sorted(c.split(".", 1)[1] for c in caps if c.startswith("contrastive."))
    if method == "vcd":
        raise bad_request(f"contrastive method 'vcd' needs image inputs and a multimodal (LLaVA-style) model; "
                          f"model {request.model!r} cannot run it (it can run: {available})", "contrastive.method")
    raise bad_request(f"contrastive method {method!r} is not available for model {request.model!r} "
                      f"(it can run: {available}; the transformers engine runs icd, ascd and steer)",
                      "contrastive.method")


def _steer_extra(params: SteerParams, prompt: MethodPrompt, param: str) -> dict[str, Any]:
    heads = params.heads if isinstance(params.heads, str) else [tuple(h) for h in params.heads]
    return {"positions": prompt.steered_positions(params, param), "heads": heads, "auto_heads": params.auto_heads,
            "strength": params.strength, "negative_strength": params.negative_strength,
            "negative_fraction": params.negative_fraction}


def method_extras(request: _SamplingFields, engine: Engine, prompt: MethodPrompt) -> dict[str, Any]:
    """The ``SamplingSpec.extra`` of this request (400 for methods the engine cannot run)."""
    _check_capabilities(request, engine)
    extra: dict[str, Any] = {}
    steer = request.steer
    if request.contrastive is not None:
        params = request.contrastive
        entry = {"method": params.method, "alpha": params.alpha, "beta": params.beta}
        if params.method == "ascd":
            if params.steer is not None and steer is not None:
                raise bad_request("give ascd's steer block once: contrastive.steer or the top-level steer", "steer")
            ascd_steer, param = (params.steer, "contrastive.steer") if params.steer is not None else (steer, "steer")
            if ascd_steer is None:
                if prompt.pixel_values is None:
                    raise bad_request("ascd on a text prompt steers prompt spans: add contrastive.steer = "
                                      "{\"spans\": [[start, end], ...]} (chat prompts with images steer their "
                                      "image tokens)", "contrastive.steer")
                ascd_steer, param = SteerParams(), "contrastive.steer"  # the image tokens, default heads
            if params.negative_prompt is not None or params.negative_system_prompt is not None:
                raise bad_request("ascd's negative branch is the same prompt with suppressed attention; "
                                  "negative_prompt / negative_system_prompt are for icd", "contrastive")
            entry["negative_prompt_ids"] = list(prompt.token_ids)
            entry["steer"] = _steer_extra(ascd_steer, prompt, param)
            steer = None  # used by ascd, not as standalone steering
        elif params.method == "vcd":
            if prompt.pixel_values is None:
                raise bad_request("vcd contrasts an image with a noised copy of it: send a chat message with an "
                                  "image_url content part", "contrastive.method")
            if params.negative_prompt is not None or params.negative_system_prompt is not None or params.steer:
                raise bad_request("vcd's negative branch is the same prompt with noised images; negative_prompt, "
                                  "negative_system_prompt and steer are for icd / ascd", "contrastive")
            if steer is not None:
                raise bad_request("steer cannot be combined with contrastive method 'vcd'; use method 'ascd' to "
                                  "contrast steered attention on the image tokens", "steer")
            entry["negative_prompt_ids"] = list(prompt.token_ids)
            entry["noise_step"] = params.noise_step
        else:
            if params.steer is not None:
                raise bad_request(f"contrastive.steer is for method 'ascd', not {params.method!r}",
                                  "contrastive.steer")
            if steer is not None:
                raise bad_request(f"steer cannot be combined with contrastive method {params.method!r}; "
                                  "use method 'ascd' to contrast steered attention", "steer")
            entry["negative_prompt_ids"] = prompt.negative_ids(params)
        extra["contrastive"] = entry
    if steer is not None:
        extra["steer"] = _steer_extra(steer, prompt, "steer")
    if prompt.pixel_values is not None:
        extra["images"] = prompt.pixel_values
    return extra


def branch_prompt_tokens(extra: dict[str, Any]) -> int:
    """Prompt tokens of the negative branch (0 without contrastive decoding): counted in ``usage``."""
    contrastive = extra.get("contrastive")
    return len(contrastive["negative_prompt_ids"]) if contrastive else 0
