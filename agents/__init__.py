"""Braid agents."""
