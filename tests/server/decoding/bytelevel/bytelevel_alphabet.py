"""The tiny alphabet the byte-level brute-force tests enumerate over."""
ALPHABET = ["a", "b", " ", "\n", "\u00e9"]
