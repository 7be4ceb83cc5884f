"""Cover logic on the real tokenizers of the bundled models, over tricky text.

SmolLM2-135M: byte-level BPE (GPT-2 style pre-tokenizer). Gemma 3 270M: SentencePiece BPE with
byte fallback, no dummy prefix, no pre-tokenizer split, and 135 non-special added tokens ("\\n"
runs, "\\t" runs, HTML tags) that the tokenizer cuts out of the raw text before BPE. The
reference is the tokenizer's own ``encode``.
"""
from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from braid.server.decoding.bytelevel import ByteLM, CanonicalityChecker, TokenVocabulary
from braid.server.decoding.bytelevel.canonicality import DEFAULT_PROBES

TEXTS = ["Hello,  world!\n", "x = 12345+67;", "def f(a):\n    return a", "日本語のテキスト",
         "emoji 😀👍🏽 ok", "tab\t\tend  ", "it's  \n x", "a\n\n\nb <b>bold</b> <b", " lead\n\n\n\n  \t\t\n"]
MODELS = {"smollm2-135m-instruct": 0, "gemma-3-270m": 2}  # bundled name -> a context token (BOS-like)


@pytest.fixture(scope="module", params=sorted(MODELS))
def real(request):
    import platformdirs
    from transformers import AutoTokenizer

    from braid.server.models.weights import resolve_source

    home = Path(os.environ.get("BRAID_HOME") or platformdirs.user_cache_dir("braid"))
    # Converted once per machine, as for users (Gemma: ~1-3 min the first time). Both models ship in the
    # lock: a conversion that fails is a failure of the suite, not a skip.
    folder = resolve_source(request.param, home)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    vocab = TokenVocabulary.from_tokenizer(tokenizer)
    return request.param, tokenizer, vocab, CanonicalityChecker(tokenizer, vocab), (MODELS[request.param],)


class SubstringLM:
    """Uniform over the tokens whose bytes occur in ``text``; the rest get probability zero."""

    def __init__(self, vocab: TokenVocabulary, text: bytes):
        self.vocab_size = vocab.size
        row = np.full(vocab.size, -np.inf)
        for i, piece in enumerate(vocab.token_bytes):
            if piece and piece in text or i in vocab.eos_ids:
                row[i] = 0.0
        self.row = torch.tensor(row).log_softmax(-1)

    def next_token_logprobs(self, prefixes):
        return self.row.expand(len(prefixes), -1).clone()


def encode(tokenizer, text: str) -> tuple[int, ...]:
    return tuple(tokenizer.encode(text, add_special_tokens=False))


def test_vocabulary_reads_the_tokenizer(real):
    name, tokenizer, vocab, _, _ = real
    space_the = "Ġthe" if name.startswith("smollm2") else "▁the"
    assert vocab.token_bytes[tokenizer.convert_tokens_to_ids(space_the)] == b" the"
    if name == "gemma-3-270m":
        assert vocab.kind == "sentencepiece" and len(vocab.added.ids) == 135
        assert encode(tokenizer, "\n\n") == (vocab.added.ids["\n\n"],) and vocab.token_bytes[108] == b"\n\n"
        assert vocab.token_bytes[tokenizer.convert_tokens_to_ids("<0x0A>")] == b"\n"  # byte fallback
    else:
        assert vocab.kind == "byte_level" and not vocab.added


def test_canonical_tokenization_is_among_the_covers(real):
    _, tokenizer, vocab, checker, context = real
    for text in TEXTS:
        data = text.encode()
        canonical = encode(tokenizer, text)
        assert checker.is_canonical(canonical) and checker.is_valid_prefix(canonical[:-1]), text
        lm = ByteLM(SubstringLM(vocab, data), vocab, checker, context_ids=context, min_token_prob=1e-9)
        for n in range(1, len(data) + 1):
            cover = lm.cover(data[:n])
            assert all(b.text.startswith(data[:n]) for b in cover)
            k = next(k for k in range(1, len(canonical) + 1) if len(vocab.decode(canonical[:k])) >= n)
            assert canonical[:k] in {b.ids for b in cover}, (text, n)
        assert np.isfinite(lm.logprob(data))


def test_invalid_utf8_has_no_cover(real):
    _, _, vocab, checker, context = real
    for data in [b"a\xff", "中".encode()[:2] + b"a", b"ok\x80", "😀".encode()[:3] + b" "]:
        lm = ByteLM(SubstringLM(vocab, data + "中😀".encode()), vocab, checker, context_ids=context,
                    min_token_prob=1e-9)
        assert lm.cover(data) == []
        good = data[:-1]
        assert lm.cover(good) and np.exp(lm.next_byte_logprobs(good)[data[-1]]) == 0.0


def _token_pool(tokenizer, vocab) -> list[int]:
    """Tokens that spell pieces of the tricky texts: the canonical ones and their rivals."""
    blob = "".join(TEXTS).encode()
    pool = {t for text in TEXTS for t in encode(tokenizer, text)}
    pool |= {i for i, piece in enumerate(vocab.token_bytes) if piece and len(piece) <= 3 and piece in blob}
    return sorted(pool)


def test_canonicality_agrees_with_the_tokenizer(real):
    """is_canonical(ids) <=> encode(text(ids)) == ids, on random sequences of rival tokens."""
    _, tokenizer, vocab, checker, _ = real
    pool = _token_pool(tokenizer, vocab)
    rng = np.random.default_rng(0)
    seqs = [tuple(int(t) for t in rng.choice(pool, size=n)) for n in (1, 2, 3) for _ in range(300)]
    seqs += [c[a:b] for c in map(lambda t: encode(tokenizer, t), TEXTS) for a, b in
             itertools.combinations(range(len(c) + 1), 2) if b - a <= 4]
    outcomes = []
    for ids in dict.fromkeys(seqs):
        data = vocab.decode(ids)
        try:
            expected = encode(tokenizer, data.decode("utf-8")) == ids
        except UnicodeDecodeError:
            expected = False
        assert checker.is_canonical(ids) == expected, (ids, data)
        outcomes.append(expected)
    assert 50 < sum(outcomes) < len(outcomes) - 50  # both kinds occur often


def test_prefixes_of_encodings_with_unicode_whitespace_are_valid(real):
    r"""Every prefix of the tokenizer's own encoding is a valid prefix, here around each multi-byte
    whitespace character. SmolLM2 encodes "Hi \u1680x" as Hi Ġ á ļ Ģ x: (Hi, Ġ, á) is valid only
    through a whitespace completion of "\xe1" (a letter would merge "Ġá"); the checker once
    completed unfinished characters from the vocabulary's alphabet only and missed it."""
    _, tokenizer, _, checker, _ = real
    spaces = [c for c in map(chr, range(0x80, 0x3001)) if c.isspace()]
    for w in spaces:
        for text in (f"Hi {w}x", f"a{w}b", f"1 {w} 2", f"x{w}{w}y", f"é{w}"):
            ids = encode(tokenizer, text)
            for k in range(1, len(ids) + 1):
                assert checker.is_valid_prefix(ids[:k]), (text, ids[:k])


def test_valid_prefixes_have_real_witnesses(real):
    """An accepted prefix has a continuation z the tokenizer really encodes it with; a rejected one
    has none among many continuations (complete-UTF-8 texts, where the probes are the witnesses)."""
    _, tokenizer, vocab, checker, _ = real
    pool = _token_pool(tokenizer, vocab)
    rng = np.random.default_rng(1)
    continuations = sorted(set(DEFAULT_PROBES) | {"x", "\n\n", "  ", "\t\t", " a", "b>", "5", "語", "👍"})
    accepted = rejected = 0
    for ids in dict.fromkeys(tuple(int(t) for t in rng.choice(pool, size=n)) for n in (1, 2, 3) for _ in range(200)):
        try:
            text = vocab.decode(ids).decode("utf-8")
        except UnicodeDecodeError:
            continue
        witnessed = [z for z in continuations if encode(tokenizer, text + z)[: len(ids)] == ids]
        if checker.is_valid_prefix(ids):
            accepted += 1
            assert witnessed, (ids, text)
        else:
            rejected += 1
            assert not witnessed, (ids, text, witnessed)
    assert accepted > 20 and rejected > 20


def test_checks_after_a_stable_boundary_match_the_whole_text(real):
    """valid_next_tokens on a long prefix asks about the text after its last stable segment
    boundary (and accepts by real witnesses first); a fresh checker asking about the whole
    text, one token at a time, must agree."""
    _, tokenizer, vocab, checker, _ = real
    text = "".join(TEXTS)
    canonical = encode(tokenizer, text)
    pool = _token_pool(tokenizer, vocab)
    pool = sorted(set(np.random.default_rng(2).choice(pool, size=min(120, len(pool)), replace=False).tolist())
                  | set(canonical))
    reference = CanonicalityChecker(tokenizer, vocab)
    reduced = 0
    for k in range(6, len(canonical), max(1, len(canonical) // 6)):
        ids = canonical[:k]
        reduced += len(checker._stable_suffix(ids)) < len(ids)
        got = checker.valid_next_tokens(ids, pool)
        want = np.array([reference.is_valid_prefix(ids + (t,)) for t in pool])
        assert (got == want).all(), (k, [vocab.token_bytes[t] for t in np.array(pool)[got != want]])
    assert reduced >= 3  # the reduction really ran


def test_always_check_keeps_a_rare_text_possible(real):
    """With min_token_prob > 0 a text whose own token is below the threshold has probability zero,
    unless always_check names it; where all its tokens clear the threshold, always_check changes
    nothing."""
    _, _, vocab, checker, context = real
    data = "x = 12345+67;".encode()

    class RareTokenLM(SubstringLM):  # the tokens of "12345" (digits) get probability ~1e-12
        def __init__(self, vocab, text):
            super().__init__(vocab, text)
            row = self.row.clone()
            digits = [i for i, p in enumerate(vocab.token_bytes) if p and p.strip(b" ").isdigit()]
            row[digits] = -28.0
            self.row = row.log_softmax(-1)

    lm = RareTokenLM(vocab, data)
    assert ByteLM(lm, vocab, checker, context_ids=context, min_token_prob=1e-6).cover(data) == []
    kept = ByteLM(lm, vocab, checker, context_ids=context, min_token_prob=1e-6, always_check=data)
    assert np.isfinite(kept.prefix_logprob(data)) and np.isclose(np.exp(kept.next_byte_logprobs(data[:4])).sum(), 1)
    plain = SubstringLM(vocab, data)  # no rare tokens: always_check changes nothing
    same = [ByteLM(plain, vocab, checker, context_ids=context, min_token_prob=1e-6, always_check=a).prefix_logprob(data)
            for a in (b"", data)]
    assert same[0] == same[1] and np.isfinite(same[0])
