"""Prompt building: chat templates, images for vision-language models, and the prompts the
decoding methods need (negative prompts, steered token positions).

Public: `render_chat` and `conversation` (messages -> template -> token ids), `has_images` and
`VisionChatPrompt` (chat with images), `MethodPrompt` with its `ChatPrompt` / `CompletionPrompt`.
"""
from .._lazy import lazy_exports

__all__ = ["render_chat", "conversation", "has_images", "VisionChatPrompt", "MethodPrompt", "ChatPrompt",
           "CompletionPrompt"]

__getattr__, __dir__ = lazy_exports(__name__, __all__, {
    ".chat_template": ["render_chat", "conversation"],
    ".images": ["has_images"],
    ".chat_vision": ["VisionChatPrompt"],
    ".method_prompts": ["MethodPrompt", "ChatPrompt", "CompletionPrompt"],
})
