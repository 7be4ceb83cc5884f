"""MCP surface of the calculator (`braid mcp serve calculator`)."""

from __future__ import annotations

from typing import Annotated

from mcp.server.fastmcp import FastMCP
from pydantic import Field

from ._serving import ServeOptions, new_fastmcp
from .calculator import CONSTANTS, FUNCTIONS, CalculationResult, calculate

__all__ = ["build_server"]

INSTRUCTIONS = (
    "Exact calculator. Integers are unbounded and decimals are exact fractions (0.1 + 0.2 == 3/10). "
    f"Operators: + - * / // % ** and parentheses. Functions: {', '.join(sorted(FUNCTIONS))}. "
    f"Constants: {', '.join(CONSTANTS)}."
)


def build_server(options: ServeOptions) -> FastMCP:
    server = new_fastmcp("calculator", INSTRUCTIONS, options)

    @server.tool(name="calculate")
    def calculate_expression(
        expression: Annotated[str, Field(min_length=1, max_length=2000,
                                         description="Arithmetic expression, e.g. '(2**100 + 1/3) * sqrt(16)'")],
        precision: Annotated[int, Field(ge=1, le=1000, description="Significant digits of the decimal form")] = 30,
    ) -> CalculationResult:
        """Evaluate an arithmetic expression exactly (big integers and fractions).

        Returns the exact result (integer or 'p/q'; a float repr for irrational results such as
        sqrt(2) or sin(1)) and its decimal form. Variables, attribute access and any other
        Python syntax are rejected with an error that names the offending part.
        """
        return calculate(expression, precision)

    return server
