"""Image features for LLaVA-style models: vision tower + projector, merged into the packed input.

A prefill of a sequence with images (``Sequence.pixel_values``) runs its images through
the model's own ``get_image_features`` (all such sequences of the step in one vision batch) and
writes the features over the embeddings of its prompt's image tokens, in order. Everything else,
and every decode step, is text: the language model then runs on ``inputs_embeds`` exactly as it
would on ``input_ids``, against the slot KV cache.
"""
from __future__ import annotations

import torch

from .attention import SequenceMeta
from .scheduler import Sequence


# Model types whose image features are exactly ``get_image_features(pixel_values)`` in placeholder order,
# with ordinary 1-D positions. Others (image_sizes tiling, M-RoPE, ...) would need their own merge.
IMAGE_MODEL_TYPES = frozenset({"llava"})


def is_multimodal(config) -> bool:
    """A vision-language config this engine runs with images (LLaVA-style)."""
    return (getattr(config, "model_type", None) in IMAGE_MODEL_TYPES
            and getattr(config, "image_token_id", None) is not None)


class ImageMerger:
    def __init__(self, model):
        self.model = model
        cfg = model.config
        self.image_token_id = cfg.image_token_id
        self.feature_kwargs = {k: getattr(cfg, k) for k in ("vision_feature_layer", "vision_feature_select_strategy")
                               if getattr(cfg, k, None) is not None}
        self.dtype = next(model.parameters()).dtype

    def wanted(self, seqs: list[Sequence], metas: list[SequenceMeta]) -> list[int]:
        """Indices of the sequences whose images this step must encode (prefills from position 0)."""
        return [i for i, (s, m) in enumerate(zip(seqs, metas)) if m.start == 0 and s.pixel_values is not None]

    def embeds(self, input_ids: torch.Tensor, seqs: list[Sequence], metas: list[SequenceMeta],
               wanted: list[int]) -> torch.Tensor:
        """``input_ids`` [T] packed -> [T, hidden] input embeddings with the image features merged."""
        embeds = self.model.get_input_embeddings()(input_ids)
        pixels = [seqs[i].pixel_values for i in wanted]
        features = self.model.get_image_features(
            pixel_values=torch.cat(pixels).to(embeds.device, self.dtype), **self.feature_kwargs).pooler_output
        features = list(features)
        offsets = torch.tensor([0] + [m.num_new for m in metas]).cumsum(0).tolist()
        for i, pix in zip(wanted, pixels):
            mine = torch.cat(features[:pix.shape[0]]).to(embeds.dtype)
            features = features[pix.shape[0]:]
            prompt_end = offsets[i] + seqs[i].num_prompt_tokens
            slots = (input_ids[offsets[i]:prompt_end] == self.image_token_id).nonzero().flatten() + offsets[i]
            if slots.numel() != mine.shape[0]:
                raise RuntimeError(f"the prompt has {slots.numel()} image tokens for {mine.shape[0]} image features")
            embeds[slots] = mine
        return embeds
