"""The tokenizer a byte-level model shows the serving layer: token ids are bytes.

Ids 0..255 are the bytes of the UTF-8 text, id 256 (``END``) ends the text and plays EOS.
``decode(ids)`` (text mode, the default) leaves END out and holds back an unfinished trailing
UTF-8 character, so incremental detokenization emits whole characters only (the next bytes
complete it; a text cut inside a character by ``max_tokens`` ends before that character).
``decode(ids, skip_special_tokens=False)`` (display mode, used for the token strings of
logprobs) shows END as ``<|end|>`` and bytes that do not form a character as ``\\xNN``.

Chat templates: a byte-level model's members each render the conversation with their own
template (see the engine); this tokenizer's ``apply_chat_template`` renders it with the first
member's, which is what the serving layer counts (``usage.prompt_tokens``) and checks the
context length against.
"""
from __future__ import annotations

END_ID = 256
END_TEXT = "<|end|>"


def utf8_complete_prefix(data: bytes) -> bytes:
    """``data`` without an unfinished UTF-8 character at its end (invalid bytes are kept)."""
    for k in range(1, min(4, len(data)) + 1):
        try:
            data[-k:].decode("utf-8")
        except UnicodeDecodeError as err:
            if err.reason == "unexpected end of data" and err.start == 0:
                return data[:-k]
    return data


class ByteTokenizer:
    """``encode``/``decode``/``eos_token_id``/``len`` over bytes; chat template from ``chat_tokenizer``."""

    eos_token_id = END_ID
    bos_token_id = None
    pad_token_id = None
    vocab_size = END_ID + 1

    def __init__(self, chat_tokenizer=None, chat_ready: bool = True):
        """``chat_tokenizer``: the first member's tokenizer; ``chat_ready``: every member has a template."""
        self._chat_tokenizer = chat_tokenizer
        self._chat_ready = chat_ready

    def __len__(self) -> int:
        return self.vocab_size

    def encode(self, text: str, add_special_tokens: bool = True, **_: object) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids, skip_special_tokens: bool = True, **_: object) -> str:
        ids = [int(i) for i in ids]
        if skip_special_tokens:
            data = bytes(i for i in ids if i < END_ID)
            return utf8_complete_prefix(data).decode("utf-8", errors="replace")
        parts, run = [], []
        for i in ids + [END_ID]:
            if i < END_ID:
                run.append(i)
                continue
            parts.append(bytes(run).decode("utf-8", errors="backslashreplace"))
            run = []
            parts.append(END_TEXT)
        return "".join(parts[:-1])

    def token_bytes(self, token_id: int) -> bytes:
        """The byte a token stands for (END: none); chat logprobs report it in ``bytes``."""
        return bytes([token_id]) if 0 <= token_id < END_ID else b""

    def convert_ids_to_tokens(self, ids):
        if isinstance(ids, int):
            return self.decode([ids], skip_special_tokens=False)
        return [self.decode([i], skip_special_tokens=False) for i in ids]

    @property
    def chat_template(self) -> str | None:
        if not self._chat_ready or self._chat_tokenizer is None:
            return None
        return getattr(self._chat_tokenizer, "chat_template", None)

    def apply_chat_template(self, conversation, tokenize: bool = False, add_generation_prompt: bool = False,
                            **kwargs):
        text = self._chat_tokenizer.apply_chat_template(conversation, tokenize=False,
                                                        add_generation_prompt=add_generation_prompt, **kwargs)
        return self.encode(text) if tokenize else text
