"""Braid server.engines."""
