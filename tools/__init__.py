"""Braid tools: MCP servers (memory, search, python, calculator, llm; `agents` serves
Braid's workflows from `braid.agents.surfaces`).

Serve one with `braid mcp serve NAME` (`tools/cli.py`); the Python sandbox's process
isolation is in `braid.tools.sandbox`, the safe expression evaluator in `braid.tools.calculator`.
Kept import-free so `python -m braid.tools` and the sandbox runner start fast.
"""
