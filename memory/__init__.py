"""Braid memory."""
