"""Braid clients."""
