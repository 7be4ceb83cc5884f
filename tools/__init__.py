"""Braid tools."""
