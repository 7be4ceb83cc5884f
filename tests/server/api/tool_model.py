"""The tiny model the tool-calling and structured-output API tests serve, and what they share about it."""
from __future__ import annotations

from pathlib import Path

__all__ = ["CALL_TOKENS", "TOOLS_TEMPLATE", "build_tool_llama", "whitespace_bias"]

CALL_TOKENS = ["<tool_call>", "</tool_call>"]

# A chat template that renders tools its own way (not the hermes system text): the tools' JSON in a
# system turn of its own, past calls as <tool_call> lines with the arguments re-encoded, results
# as `result of <id> (<name>)` user turns. Tests render it themselves to know the prompt.
TOOLS_TEMPLATE = """\
{%- if tools -%}
<|im_start|>system
Functions: {{ tools | tojson }}
Call one as <tool_call>{"name": ..., "arguments": {...}}</tool_call><|im_end|>
{% endif -%}
{%- for message in messages -%}
{%- if message['role'] == 'tool' -%}
<|im_start|>user
result of {{ message['tool_call_id'] }} ({{ message['name'] }}): {{ message['content'] }}<|im_end|>
{% elif message['role'] == 'assistant' and message.get('tool_calls') -%}
<|im_start|>assistant
{{ message['content'] or '' }}
{%- for call in message['tool_calls'] %}<tool_call>{"name": {{ call['function']['name'] | tojson }}, \
"arguments": {{ call['function']['arguments'] | tojson }}}</tool_call>{% endfor %}<|im_end|>
{% else -%}
<|im_start|>{{ message['role'] }}
{{ message['content'] }}<|im_end|>
{% endif -%}
{%- endfor -%}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif -%}
"""


def build_tool_llama(folder: Path) -> Path:
    """The tiny Llama with 2048 positions (a two-tool hermes prompt is ~760 of its tokens) and,
    as in Qwen2.5's vocabulary, ``<tool_call>`` and ``</tool_call>`` as tokens of their own: a logit
    bias on one token can then make the model open a call (spelt in single characters it cannot)."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    from tiny_models import build_tiny_llama

    build_tiny_llama(folder, max_position_embeddings=2048)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.add_tokens(CALL_TOKENS)
    model = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32)
    torch.manual_seed(1)
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    tokenizer.save_pretrained(folder)
    model.save_pretrained(folder)
    return folder


def whitespace_bias(tokenizer, value: int = -100) -> dict[str, int]:
    """``logit_bias`` pushing every whitespace-only token down: greedy decoding of the random model
    would otherwise fill the whitespace a grammar allows (inside tool-call arguments) to max_tokens."""
    return {str(i): value for i in range(len(tokenizer)) if (text := tokenizer.decode([i])) and not text.strip()}
