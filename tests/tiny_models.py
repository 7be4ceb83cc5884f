"""Tiny models built at test time: a BPE tokenizer trained with `tokenizers`, a random Llama.

They are saved as ordinary transformers folders and loaded through the same code path as
real models. ``head_dim`` is 32 because vLLM's CPU attention supports only a few head sizes.
"""
from __future__ import annotations

from pathlib import Path

CORPUS = [
    "The capital of France is Paris. The capital of Italy is Rome.",
    "Braid serves language models with contrastive and byte-level decoding.",
    "def add(a, b):\n    return a + b\n",
    "One, two, three, four, five, six, seven, eight, nine, ten.",
    "A quick brown fox jumps over the lazy dog; 12345 67890!",
    "Hello world! How are you today? I am fine, thank you.",
]

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def train_bpe_tokenizer(folder: Path, vocab_size: int = 320):
    """A byte-level BPE tokenizer (GPT-2 style) with ChatML special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 20, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(folder)
    return fast


GEMMA_STYLE_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<start_of_turn>"
    "{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n{{ message['content'] }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def train_sentencepiece_bpe_tokenizer(folder: Path, vocab_size: int = 300):
    """A SentencePiece-style BPE (Llama/Gemma family): ``▁`` for spaces, ``<0xNN>`` byte fallback,
    Gemma-like chat turns; a different tokenizer and template from `train_bpe_tokenizer`."""
    import json

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"]
    metaspace = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="never", split=False)
    learner = Tokenizer(models.BPE(unk_token="<unk>"))
    learner.pre_tokenizer = metaspace
    learner.train_from_iterator(CORPUS * 20, trainer=trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, show_progress=False))
    learned = json.loads(learner.to_str())["model"]
    vocab = {t: i for i, t in enumerate(specials + [f"<0x{b:02X}>" for b in range(256)])}
    for token, _ in sorted(learned["vocab"].items(), key=lambda item: item[1]):
        vocab.setdefault(token, len(vocab))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[tuple(m) for m in learned["merges"]], byte_fallback=True,
                               unk_token="<unk>"))
    tok.pre_tokenizer = metaspace
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.add_special_tokens(specials)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<end_of_turn>",
                                   unk_token="<unk>", pad_token="<eos>")
    fast.chat_template = GEMMA_STYLE_TEMPLATE
    fast.save_pretrained(folder)
    return fast


def build_tiny_llama(folder: Path, seed: int = 0, vocab_size: int = 320, layers: int = 2,
                     max_position_embeddings: int = 512, tokenizer: str = "byte_level") -> Path:
    """Random-init Llama (hidden 64, 2 heads of 32, 1 KV head) + tokenizer, saved to ``folder``.

    ``tokenizer``: "byte_level" (GPT-2-style BPE, ChatML) or "sentencepiece" (byte fallback, Gemma-style turns).
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    train = {"byte_level": train_bpe_tokenizer, "sentencepiece": train_sentencepiece_bpe_tokenizer}[tokenizer]
    tok = train(folder, vocab_size)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # larger logits so greedy choices are well separated (no fp near-ties)
        model.lm_head.weight.mul_(8.0)
    model.save_pretrained(folder)
    GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id).save_pretrained(folder)
    return folder
