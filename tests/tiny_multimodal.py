"""A tiny LLaVA-style model built at test time: random CLIP vision tower + projector + tiny Llama.

Saved with its processor (CLIP image processor, the ChatML BPE tokenizer of ``tiny_models`` with an
``<image>`` token, a chat template that takes content parts), so it loads like a real LLaVA folder.
32x32 images in 8x8 patches: 16 image tokens per image (the CLS feature is dropped).
"""
from __future__ import annotations

from pathlib import Path

from tiny_models import train_bpe_tokenizer

IMAGE_SIZE, PATCH = 32, 8
IMAGE_TOKENS = (IMAGE_SIZE // PATCH) ** 2

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<image>\n"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_llava(folder: Path, seed: int = 0) -> Path:
    import torch
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, GenerationConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)

    folder.mkdir(parents=True, exist_ok=True)
    tok = train_bpe_tokenizer(folder)
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    tok.chat_template = CHAT_TEMPLATE
    image_token_id = tok.convert_tokens_to_ids("<image>")
    text = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=1, head_dim=32, max_position_embeddings=512,
                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                       tie_word_embeddings=False)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=IMAGE_SIZE, patch_size=PATCH, projection_dim=32)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_id=image_token_id,
                         vision_feature_layer=-1, vision_feature_select_strategy="default",
                         tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    with torch.no_grad():  # well separated greedy choices; image features strong enough to matter
        model.lm_head.weight.mul_(8.0)
        model.model.multi_modal_projector.linear_2.weight.mul_(4.0)
    model.save_pretrained(folder)
    GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                     pad_token_id=tok.pad_token_id).save_pretrained(folder)
    images = CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE,
                                                                             "width": IMAGE_SIZE})
    processor = LlavaProcessor(image_processor=images, tokenizer=tok, patch_size=PATCH,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=CHAT_TEMPLATE)
    processor.save_pretrained(folder)
    return folder


def with_hub_layout(folder: Path, target: Path) -> Path:
    """A copy of the tiny LLaVA whose checkpoint names the vision tower as Hub LLaVA checkpoints do
    (``vision_tower.vision_model.*``). transformers 5 saves ``vision_tower.*`` and loads both;
    vLLM 0.32's LLaVA loader knows only the Hub names."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(folder, target, dirs_exist_ok=True)
    weights = load_file(target / "model.safetensors")
    prefix = "vision_tower."
    weights = {prefix + "vision_model." + k[len(prefix):] if k.startswith(prefix) and "vision_model." not in k else k: v
               for k, v in weights.items()}
    save_file(weights, target / "model.safetensors", metadata={"format": "pt"})
    return target
