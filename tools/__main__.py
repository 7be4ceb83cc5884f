"""`python -m braid.tools serve NAME ...` (the same app as `braid mcp`)."""

from .cli import mcp_app

mcp_app(prog_name="braid mcp")
