"""Prompts with images on vLLM (LLaVA-style models): Braid's preprocessed pixels, not vLLM's.

Braid's serving layer has already run the model's processor: the prompt's image tokens are
expanded (``N`` per image) and ``SamplingSpec.plan.images`` holds the ``pixel_values``
[num_images, C, H, W]. vLLM expands each image placeholder itself and preprocesses images itself,
so an image request goes in as

* the prompt with each run of ``N`` image tokens collapsed back to one placeholder, and
* the pixel tensors as the images, with every step of the image processor switched off
  (``RAW_PIXELS``): the tensor vLLM's vision tower sees is exactly Braid's, bit for bit. That is
  what lets VCD's negative branch get the *preprocessed* tensor noised by
  ``decoding.visual_noise``, as on the transformers engine.

vLLM's own expansion of the collapsed prompt must give back Braid's prompt: a mismatch is a 400,
never a silently different prompt.
"""
from __future__ import annotations

from typing import Any

from ..base import EngineError

# The image processor's steps, all off: a [C, H, W] float tensor passes through unchanged.
RAW_PIXELS = {"do_resize": False, "do_center_crop": False, "do_rescale": False, "do_normalize": False,
              "do_convert_rgb": False, "do_pad": False}


def supports_images(config) -> bool:
    """LLaVA-1.5-style models: one fixed-size image tensor per image, one placeholder token each
    in vLLM's prompt (not Pixtral, whose images keep their own sizes)."""
    vision = getattr(config, "vision_config", None)
    return (getattr(config, "model_type", None) == "llava" and image_token_id(config) is not None
            and getattr(vision, "model_type", None) != "pixtral")


def image_token_id(config) -> int | None:
    token = getattr(config, "image_token_id", None)
    return token if token is not None else getattr(config, "image_token_index", None)


def collapse_image_tokens(token_ids: list[int], image_token: int, num_images: int) -> list[int]:
    """``token_ids`` with each image's run of image tokens replaced by a single one."""
    total = sum(t == image_token for t in token_ids)
    if num_images < 1 or total % num_images:
        raise EngineError(f"the prompt has {total} image tokens, which {num_images} image(s) cannot have expanded to")
    per_image = total // num_images
    collapsed, run = [], 0
    for token in token_ids:
        if token != image_token:
            if run:
                raise EngineError(f"the prompt has a run of {run} image tokens; each image has {per_image}")
            collapsed.append(token)
            continue
        run += 1
        if run == per_image:
            collapsed.append(image_token)
            run = 0
    if run:
        raise EngineError(f"the prompt ends in a run of {run} image tokens; each image has {per_image}")
    return collapsed


def image_prompt(token_ids: list[int], pixel_values, image_token: int) -> dict[str, Any]:
    """A vLLM ``TokensPrompt`` for a prompt with images (``pixel_values`` [num_images, C, H, W])."""
    pixels = pixel_values.detach().cpu()
    return {"prompt_token_ids": collapse_image_tokens(token_ids, image_token, pixels.shape[0]),
            # a list: vLLM takes a lone 3-D tensor for image *embeddings*
            "multi_modal_data": {"image": list(pixels)},
            "mm_processor_kwargs": dict(RAW_PIXELS)}


async def engine_input(engine, model: str, token_ids: list[int], pixel_values, image_token: int | None):
    """The vLLM engine input of a prompt, its images (if any) preprocessed by vLLM's renderer now,
    outside the engine's request admission."""
    from vllm.inputs.engine import tokens_input

    if pixel_values is None:
        return tokens_input(list(token_ids))
    try:
        # skip_mm_cache: with vLLM's processor cache, a plain request sent alongside pairs over the
        # same image came back aborted (no tokens). That cache sends an image's data only with the
        # first request that renders it, assuming requests reach the engine core in render order,
        # which pairs waiting for admission break. Without it every request carries its pixels.
        (rendered,) = await engine.renderer.render_cmpl_async([image_prompt(token_ids, pixel_values, image_token)],
                                                              skip_mm_cache=True)
    except ValueError as exc:  # vLLM's processor refused the images (count limits, shapes)
        raise EngineError(f"vLLM cannot take the images of this prompt: {exc}") from exc
    if list(rendered["prompt_token_ids"]) != list(token_ids):
        raise EngineError(f"vLLM expands the images of model {model!r} into {len(rendered['prompt_token_ids'])} "
                          f"prompt tokens, the model's processor into {len(token_ids)}; serve the model with "
                          "engine 'transformers'")
    return rendered
