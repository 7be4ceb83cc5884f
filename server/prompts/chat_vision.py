"""Chat with images (vision-language models): messages -> the model's processor -> tokens and pixels.

The model's own processor renders its chat template over content parts (``{"type": "image"}``
where an image goes), expands each image placeholder into the model's image tokens and
preprocesses the images into ``pixel_values``. Steering (ASCD, ``steer``) on such a prompt steers
its image tokens (the processor's ``image_token_id``); steer spans (character offsets into a text
message) are a 400 here.
"""
from __future__ import annotations

from ..api.errors import bad_request
from ..decoding.contrastive import DEFAULT_DISTURBANCE
from .images import IMAGE_PART_TYPES, load_image
from ..api.protocol import ChatMessage, ContrastiveParams, SteerParams
from .method_prompts import MethodPrompt

__all__ = ["VisionChatPrompt"]


def vision_turns(messages: list[ChatMessage]) -> tuple[list[dict], list]:
    """Messages as ``{"role", "content": [parts]}`` turns for a processor's chat template, and the images."""
    turns, images = [], []
    for i, message in enumerate(messages):
        param = f"messages[{i}].content"
        content = message.content
        parts = [] if content is None else [{"type": "text", "text": content}] if isinstance(content, str) else []
        for part in content if isinstance(content, list) else []:
            kind = part.get("type")
            if kind == "text":
                parts.append({"type": "text", "text": str(part.get("text", ""))})
            elif kind in IMAGE_PART_TYPES:
                images.append(load_image(part, param))
                parts.append({"type": "image"})
            else:
                raise bad_request(f"unsupported content part type {kind!r}", param)
        turns.append({"role": "system" if message.role == "developer" else message.role, "content": parts})
    return turns, images


class VisionChatPrompt(MethodPrompt):
    """A chat prompt with images; ``pixel_values`` [num_images, C, H, W] as the processor made them."""

    def __init__(self, processor, messages: list[ChatMessage], add_generation_prompt: bool,
                 template_kwargs: dict | None):
        super().__init__()
        self.processor, self.add_generation_prompt = processor, add_generation_prompt
        self.template_kwargs = template_kwargs or {}
        self.turns, self.images = vision_turns(messages)
        self.token_ids, self.pixel_values = self._encode(self.turns, self.images)
        image_token_id = getattr(processor, "image_token_id", None)
        self.image_token_id = (image_token_id if image_token_id is not None
                               else processor.tokenizer.convert_tokens_to_ids(processor.image_token))

    def _encode(self, turns: list[dict], images: list) -> tuple[list[int], object]:
        try:
            text = self.processor.apply_chat_template(turns, tokenize=False,
                                                      add_generation_prompt=self.add_generation_prompt,
                                                      **self.template_kwargs)
        except Exception as exc:  # template errors are the caller's (e.g. roles out of order)
            raise bad_request(f"the chat template rejected these messages: {exc}", "messages") from exc
        try:
            enc = self.processor(text=[text], images=images, return_tensors="pt", add_special_tokens=False)
        except ValueError as exc:  # e.g. image placeholders typed into the text do not match the images
            raise bad_request(f"the model's processor rejected this prompt: {exc}", "messages") from exc
        return enc["input_ids"][0].tolist(), enc["pixel_values"]

    def _build_negative(self, params: ContrastiveParams) -> list[int]:
        if params.negative_prompt is not None:
            raise bad_request("chat takes negative_system_prompt; negative_prompt is for completions",
                              "contrastive.negative_prompt")
        system = {"role": "system",
                  "content": [{"type": "text", "text": params.negative_system_prompt or DEFAULT_DISTURBANCE}]}
        rest = self.turns[1:] if self.turns and self.turns[0]["role"] == "system" else self.turns
        return self._encode([system, *rest], self.images)[0]

    def steered_positions(self, params: SteerParams, param: str = "steer") -> list[int]:
        """The positions of the prompt's image tokens (every image's, in the expanded prompt)."""
        if params.spans is not None:
            raise bad_request("steer spans are not available for prompts with images: a prompt with images steers "
                              "its image tokens; leave out spans", f"{param}.spans")
        if self._steered is None:
            self._steered = [i for i, t in enumerate(self.token_ids) if t == self.image_token_id]
            if not self._steered:
                raise bad_request("the prompt has no image tokens to steer", "messages")
        return self._steered

    def _text_and_offsets(self, param: str):
        raise bad_request("steer spans are not available for prompts with images", f"{param}.spans")
