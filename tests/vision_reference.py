"""Independent references for image chat and VCD: a plain ``LlavaForConditionalGeneration``
(no Braid code), re-run from scratch on the whole sequence every step, combined in float64."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from contrastive_reference import combine, one_thread
from tiny_multimodal import IMAGE_TOKENS

__all__ = ["encode", "pair_greedy", "picture", "plain_greedy"]


def picture(seed: int) -> Image.Image:
    return Image.fromarray((np.random.RandomState(seed).rand(40, 52, 3) * 255).astype("uint8"))


def encode(processor, images: list[Image.Image], text: str, system: str | None = None):
    """The processor's own rendering of one user turn with ``images`` first: (token ids, pixel_values)."""
    turns = [{"role": "user", "content": [*({"type": "image"} for _ in images), {"type": "text", "text": text}]}]
    if system is not None:
        turns.insert(0, {"role": "system", "content": [{"type": "text", "text": system}]})
    rendered = processor.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    enc = processor(text=[rendered], images=images, return_tensors="pt", add_special_tokens=False)
    ids = enc["input_ids"][0].tolist()
    assert ids.count(processor.tokenizer.convert_tokens_to_ids("<image>")) == IMAGE_TOKENS * len(images)
    return ids, enc["pixel_values"]


@torch.no_grad()
def _logprobs(model, ids: list[int], pixel_values) -> torch.Tensor:
    return model(input_ids=torch.tensor([ids]), pixel_values=pixel_values).logits[0, -1].double().log_softmax(-1)


@torch.no_grad()
def plain_greedy(model, ids: list[int], pixel_values, steps: int, eos: int | None):
    tokens, dists = [], []
    with one_thread():
        for _ in range(steps):
            dists.append(_logprobs(model, ids + tokens, pixel_values))
            tokens.append(int(dists[-1].argmax()))
            if tokens[-1] == eos:
                break
    return tokens, dists


@torch.no_grad()
def pair_greedy(model, positive: list[int], pos_pixels, negative: list[int], neg_pixels, steps: int,
                eos: int | None, alpha: float = 1.0, beta: float = 0.1):
    """Greedy contrastive decoding over two (prompt, images) branches: (tokens, combined log-softmax per step)."""
    tokens, dists = [], []
    with one_thread():
        for _ in range(steps):
            scores = combine(_logprobs(model, positive + tokens, pos_pixels),
                             _logprobs(model, negative + tokens, neg_pixels), alpha, beta)
            dists.append(scores.log_softmax(-1))
            tokens.append(int(dists[-1].argmax()))
            if tokens[-1] == eos:
                break
    return tokens, dists
