"""Xolver: multi-agent reasoning with an evolving experience memory, as a Braid workflow."""
