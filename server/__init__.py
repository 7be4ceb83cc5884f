"""braid.server: the OpenAI-compatible inference server (protocol, serving, routes, engines)."""
