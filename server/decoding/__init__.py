"""Decoding methods: pure functions over logits and small classes over a token LM."""
