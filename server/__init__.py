"""braid.server: the OpenAI-compatible inference server. Packages: ``api`` (the HTTP surface),
``prompts``, ``models`` (settings, registry, weights), ``engines``, ``decoding``, ``kernels``,
``tool_calling``; ``plans`` and ``sampling`` are the contract between serving and engines. Each
package's public API is its ``__all__`` (README, "Python API")."""
