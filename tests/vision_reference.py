"""Independent references for image chat, VCD and ASCD: a plain ``LlavaForConditionalGeneration``
(no Braid code), re-run from scratch on the whole sequence every step, combined in float64. For
steering, :func:`load_steerable_llava` gives the language model the test's own eager attention
(``contrastive_reference.reference_attention``) and a branch's ``how`` modifies its scores."""
from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from braid.server.decoding.visual_noise import noise_image
from contrastive_reference import ATTN, combine, one_thread, reference_attention, steering
from tiny_multimodal import IMAGE_TOKENS

__all__ = ["ChatAnswers", "QUESTION", "chat_answers", "data_uri", "encode", "generate", "image_messages",
           "load_reference", "load_steerable_llava", "pair_greedy", "picture", "plain_greedy"]


QUESTION = "What is in the picture?"


def data_uri(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def image_messages(url: str, text: str = QUESTION) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                         {"type": "text", "text": text}]}]


def load_reference(path):
    """A plain ``LlavaForConditionalGeneration`` (float32, eval) and its processor."""
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    return (LlavaForConditionalGeneration.from_pretrained(path, dtype=torch.float32).eval(),
            AutoProcessor.from_pretrained(path))


@torch.no_grad()
def generate(model, ids, steps: int, pixels=None) -> list[int]:
    """Greedy ``steps`` tokens after ``ids`` by ``model.generate`` (images optional)."""
    images = {} if pixels is None else {"pixel_values": pixels}
    with one_thread():
        out = model.generate(input_ids=torch.tensor([list(ids)]), max_new_tokens=steps, do_sample=False, **images)
    return out[0, len(ids):].tolist()


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


@dataclass
class ChatAnswers:
    """What a plain reference model answers to the image-chat requests both engines' API tests send."""

    image: Image.Image  # the picture sent as a data URI
    other_path: Path  # another picture, sent as a file
    ids: list[int]  # the prompt with ``image``
    pixels: torch.Tensor  # ``image`` as the processor gives it to the model
    neg_ids: list[int]  # the same prompt under the system prompt "Be confused." (ICD's negative)
    plain: list[int]
    other: list[int]  # the answer for the picture at ``other_path``
    text: list[int]  # the text-only chat (no image)
    vcd: list[int]  # VCD, noise step 300, seed 7, alpha 1
    vcd_dists: list  # its combined distribution at each step
    icd: list[int]  # ICD with ``neg_ids``, alpha 0.5


def chat_answers(model, processor, steps: int, workdir: Path) -> ChatAnswers:
    """The reference answers (greedy, ``steps`` tokens) of the shared image-chat requests; asserts
    that the image decides the answer and that VCD changes it, else those tests would prove little."""
    eos = processor.tokenizer.eos_token_id
    image, other = picture(0), picture(1)
    other_path = workdir / "other.png"
    other.save(other_path)
    ids, pixels = encode(processor, [image], QUESTION)
    other_ids, other_pixels = encode(processor, [other], QUESTION)
    plain, other_answer = generate(model, ids, steps, pixels), generate(model, other_ids, steps, other_pixels)
    assert plain != other_answer  # the image decides the answer
    vcd, vcd_dists = pair_greedy(model, ids, pixels, ids, noise_image(pixels, 300, seed=7), steps, eos)
    assert vcd != plain[:len(vcd)]  # the contrast changes the answer
    neg_ids, _ = encode(processor, [image], QUESTION, system="Be confused.")
    icd, _ = pair_greedy(model, ids, pixels, neg_ids, pixels, steps, eos, alpha=0.5)
    text_ids = processor.apply_chat_template([{"role": "user", "content": QUESTION}], add_generation_prompt=True,
                                             tokenize=True, return_dict=True, return_tensors="pt")["input_ids"]
    text = generate(model, text_ids[0].tolist(), steps)  # a vision model answers text-only chats as an LM
    return ChatAnswers(image, other_path, ids, pixels, neg_ids, plain, other_answer, text, vcd, vcd_dists, icd)


def load_steerable_llava(path):
    """The LLaVA with the reference attention (steerable, float64) in its language model only."""
    from transformers import AttentionInterface, LlavaForConditionalGeneration

    AttentionInterface.register(ATTN, reference_attention)
    return LlavaForConditionalGeneration.from_pretrained(path, dtype=torch.float32,
                                                         attn_implementation={"text_config": ATTN}).eval()


@torch.no_grad()
def _logprobs(model, ids: list[int], pixel_values, how=None) -> torch.Tensor:
    """``how``: a ``contrastive_reference`` UpSteer / Suppress (needs :func:`load_steerable_llava`)."""
    with steering(how):
        out = model(input_ids=torch.tensor([ids]), pixel_values=pixel_values)
    return out.logits[0, -1].double().log_softmax(-1)


@torch.no_grad()
def plain_greedy(model, ids: list[int], pixel_values, steps: int, eos: int | None, how=None):
    tokens, dists = [], []
    with one_thread():
        for _ in range(steps):
            dists.append(_logprobs(model, ids + tokens, pixel_values, how))
            tokens.append(int(dists[-1].argmax()))
            if tokens[-1] == eos:
                break
    return tokens, dists


@torch.no_grad()
def pair_greedy(model, positive: list[int], pos_pixels, negative: list[int], neg_pixels, steps: int,
                eos: int | None, alpha: float = 1.0, beta: float = 0.1, pos_how=None, neg_how=None):
    """Greedy contrastive decoding over two (prompt, images) branches: (tokens, combined log-softmax per step)."""
    tokens, dists = [], []
    with one_thread():
        for _ in range(steps):
            scores = combine(_logprobs(model, positive + tokens, pos_pixels, pos_how),
                             _logprobs(model, negative + tokens, neg_pixels, neg_how), alpha, beta)
            dists.append(scores.log_softmax(-1))
            tokens.append(int(dists[-1].argmax()))
            if tokens[-1] == eos:
                break
    return tokens, dists
