"""A byte view of a tokenizer's vocabulary: token id -> the bytes it contributes to the text.

Two families are understood:

* byte-level BPE (GPT-2, SmolLM2, Llama 3): token strings are bytes mapped to printable
  unicode characters (``Ġ`` is the space byte), undone with GPT-2's byte decoder;
* SentencePiece-style BPE (Llama 2, Gemma): ``▁`` stands for a space and ``<0xNN>`` tokens
  are byte fallback for characters missing from the vocabulary.

Special tokens contribute no bytes (``None``): they never cover text. Non-special added tokens
(Gemma's "\n" runs, "\t" runs, HTML tags) are text, matched in the raw text before BPE (see
`_added_tokens.py`). The EOS token(s) end the text and are handled apart.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from ._added_tokens import AddedTokens

__all__ = ["TokenVocabulary"]

_BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
SPACE_MARKER = "\u2581"  # ▁


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


def backend_tokenizer(tokenizer):
    """The `tokenizers.Tokenizer` behind a tokenizer object (HF fast tokenizer or raw)."""
    return getattr(tokenizer, "backend_tokenizer", tokenizer)


def _mentions(component, type_name: str) -> bool:
    return component is not None and type_name in json.dumps(component)


@dataclass
class TokenVocabulary:
    """Token id -> bytes (``None`` for special tokens), plus the EOS ids."""

    token_bytes: list[bytes | None]
    eos_ids: tuple[int, ...]
    kind: str  # "byte_level" or "sentencepiece"
    added: AddedTokens = field(default_factory=lambda: AddedTokens({}))  # non-special, cut out before BPE
    first_byte: np.ndarray = field(init=False, repr=False)  # int64 [V], -1 where no bytes

    def __post_init__(self):
        if self.kind not in ("byte_level", "sentencepiece"):
            raise ValueError(f"kind must be 'byte_level' or 'sentencepiece', got {self.kind!r}")
        if not self.eos_ids:
            raise ValueError("at least one EOS token id is required")
        self.first_byte = np.array([b[0] if b else -1 for b in self.token_bytes], dtype=np.int64)

    @property
    def size(self) -> int:
        return len(self.token_bytes)

    def decode(self, ids) -> bytes:
        """Concatenated bytes of text tokens; raises on a special token."""
        out = []
        for i in ids:
            piece = self.token_bytes[i]
            if piece is None:
                raise ValueError(f"token {i} is special and has no text")
            out.append(piece)
        return b"".join(out)

    @classmethod
    def from_tokenizer(cls, tokenizer, eos_ids=None) -> "TokenVocabulary":
        """Build from a `tokenizers.Tokenizer` or a transformers fast tokenizer."""
        backend = backend_tokenizer(tokenizer)
        spec = json.loads(backend.to_str())
        if spec["model"]["type"] != "BPE":
            raise NotImplementedError(f"only BPE models are supported, got {spec['model']['type']}")
        byte_level = _mentions(spec.get("pre_tokenizer"), "ByteLevel") or _mentions(spec.get("decoder"), "ByteLevel")
        kind = "byte_level" if byte_level else "sentencepiece"
        added_tokens = AddedTokens.from_spec(spec.get("added_tokens", []))
        added = {t["id"] for t in spec.get("added_tokens", [])}
        added_text = {i: text for text, i in added_tokens.ids.items()}
        if eos_ids is None:
            eos_token = getattr(tokenizer, "eos_token_id", None)
            if eos_token is None:
                raise ValueError("pass eos_ids: the tokenizer names no EOS token")
            eos_ids = (eos_token,)
        byte_of = {c: b for b, c in bytes_to_unicode().items()}
        size = backend.get_vocab_size(with_added_tokens=True)
        token_bytes: list[bytes | None] = []
        for i in range(size):
            text = backend.id_to_token(i)
            if i in added_text:
                token_bytes.append(added_text[i].encode("utf-8"))
            elif text is None or i in added:
                token_bytes.append(None)
            elif kind == "byte_level":
                token_bytes.append(bytes(byte_of[c] for c in text) if all(c in byte_of for c in text) else None)
            elif (m := _BYTE_FALLBACK.match(text)) and spec["model"].get("byte_fallback"):
                token_bytes.append(bytes([int(m.group(1), 16)]))
            else:
                token_bytes.append(text.replace(SPACE_MARKER, " ").encode("utf-8"))
        return cls(token_bytes, tuple(int(e) for e in eos_ids), kind, added_tokens)
