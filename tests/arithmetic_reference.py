"""Python's own exact arithmetic on + - * / and integer literals: the independent reference for what
Braid's calculator tool should answer to an expression a model wrote."""
from __future__ import annotations

import ast
import operator
from fractions import Fraction

__all__ = ["expected_result"]

_ARITHMETIC = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def exact_value(node: ast.AST) -> Fraction:
    """Python's own arithmetic on + - * / and integer literals (ValueError for anything else)."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return Fraction(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = exact_value(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
        return _ARITHMETIC[type(node.op)](exact_value(node.left), exact_value(node.right))
    raise ValueError(f"not plain arithmetic: {ast.dump(node)}")


def expected_result(expression: str) -> str | None:
    """The calculator's exact answer computed here, or None where the expression is not plain arithmetic."""
    try:
        value = exact_value(ast.parse(expression.strip(), mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError):
        return None
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"
