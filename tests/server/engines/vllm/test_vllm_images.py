"""Image prompts for vLLM: the processor's expanded prompt back to one placeholder per image."""
from __future__ import annotations

import pytest
import torch

from braid.server.engines.base import EngineError
from braid.server.engines.vllm.images import RAW_PIXELS, collapse_image_tokens, image_prompt

IMG = 9


@pytest.mark.parametrize("ids,images,want", [
    ([1, IMG, IMG, IMG, 2, 3], 1, [1, IMG, 2, 3]),
    ([IMG, IMG, 5, IMG, IMG], 2, [IMG, 5, IMG]),
    ([IMG, IMG, IMG, IMG, 5], 2, [IMG, IMG, 5]),  # two images back to back
    ([1, 2, 3], 0, None),
    ([1, IMG, IMG, IMG, 2], 2, None),  # 3 image tokens cannot be 2 images
    ([IMG, IMG, 1, IMG, 2, IMG, IMG, IMG], 3, None),  # counts add up, runs do not
])
def test_collapse_image_tokens(ids, images, want):
    if want is None:
        with pytest.raises(EngineError, match="image tokens"):
            collapse_image_tokens(ids, IMG, images)
    else:
        assert collapse_image_tokens(ids, IMG, images) == want


def test_image_prompt_passes_the_pixel_tensors_through_as_a_list():
    pixels = torch.randn(2, 3, 4, 4)
    prompt = image_prompt([IMG] * 6 + [1], pixels, IMG)
    assert prompt["prompt_token_ids"] == [IMG, IMG, 1]
    images = prompt["multi_modal_data"]["image"]
    assert isinstance(images, list) and len(images) == 2 and all(torch.equal(a, b) for a, b in zip(images, pixels))
    assert prompt["mm_processor_kwargs"] == RAW_PIXELS and not any(RAW_PIXELS.values())
