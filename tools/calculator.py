"""Exact arithmetic over a safe expression parser.

The expression is parsed with `ast` and walked over an allowlist of node types; nothing is
`eval`-ed. Integers stay big ints and decimal literals become exact fractions (`0.1 + 0.2` is
exactly `3/10`), so + - * / // % and integer powers are exact; math functions (sqrt, sin,
log, ...) return floats unless the exact answer is rational (`sqrt(16/9)` is `4/3`). Sizes are
capped so a short expression cannot make the server compute for minutes.
"""

from __future__ import annotations

import ast
import math
import operator
from decimal import Context, Decimal
from fractions import Fraction
from typing import Callable, Literal

from pydantic import BaseModel

__all__ = ["CalculationError", "CalculationResult", "FUNCTIONS", "CONSTANTS", "calculate"]

Number = int | Fraction | float
MAX_EXPRESSION_CHARS = 2_000
MAX_RESULT_BITS = 100_000
"""Largest integer (or numerator/denominator) a result or intermediate may have (~30k digits)."""
MAX_FACTORIAL = 3_000


class CalculationError(ValueError):
    """The expression is invalid, unsupported or too large; the message says which part."""


class CalculationResult(BaseModel):
    expression: str
    result: str
    """Exact result: an integer, a fraction 'p/q', or a float's repr when inexact."""
    decimal: str
    """The result in decimal notation, rounded to `precision` significant digits."""
    kind: Literal["integer", "fraction", "float"]
    exact: bool


def _check_size(value: Number) -> Number:
    if isinstance(value, Fraction):
        bits = max(value.numerator.bit_length(), value.denominator.bit_length())
    elif isinstance(value, int):
        bits = value.bit_length()
    else:
        if not math.isfinite(value):
            raise CalculationError(f"result is not finite ({value})")
        return value
    if bits > MAX_RESULT_BITS:
        raise CalculationError(f"number too large (over {MAX_RESULT_BITS} bits)")
    return value.numerator if isinstance(value, Fraction) and value.denominator == 1 else value


def _power(base: Number, exponent: Number) -> Number:
    if isinstance(exponent, Fraction) and exponent.denominator == 1:
        exponent = exponent.numerator
    if isinstance(exponent, int) and not isinstance(base, float):
        base_bits = max(Fraction(base).numerator.bit_length(), Fraction(base).denominator.bit_length())
        if base_bits * abs(exponent) > MAX_RESULT_BITS:
            raise CalculationError(f"power too large: result would exceed {MAX_RESULT_BITS} bits")
        if base == 0 and exponent < 0:
            raise CalculationError("division by zero (0 to a negative power)")
        return Fraction(base) ** exponent
    result = float(base) ** float(exponent)
    if isinstance(result, complex):
        raise CalculationError("complex results are not supported (negative base, fractional power)")
    return result


def _divide(a: Number, b: Number) -> Number:
    if b == 0:
        raise CalculationError("division by zero")
    return a / b if isinstance(a, float) or isinstance(b, float) else Fraction(a) / Fraction(b)


def _exact_sqrt(x: Number) -> Number:
    if x < 0:
        raise CalculationError("sqrt of a negative number")
    if not isinstance(x, float):
        f = Fraction(x)
        num, den = math.isqrt(f.numerator), math.isqrt(f.denominator)
        if num * num == f.numerator and den * den == f.denominator:
            return Fraction(num, den)
    return math.sqrt(x)


def _integer(name: str, x: Number, limit: int | None = None) -> int:
    if isinstance(x, Fraction) and x.denominator == 1:
        x = x.numerator
    if not isinstance(x, int):
        raise CalculationError(f"{name}() needs an integer argument, got {x}")
    if limit is not None and abs(x) > limit:
        raise CalculationError(f"{name}() argument too large (limit {limit})")
    return x


def _log(x: Number, base: Number | None = None) -> float:
    if x <= 0 or (base is not None and (base <= 0 or base == 1)):
        raise CalculationError("log() is only defined for positive x and a positive base other than 1")
    return math.log(x) if base is None else math.log(x) / math.log(base)


def _float_fn(fn: Callable[..., float]) -> Callable[..., float]:
    def wrapped(*args: Number) -> float:
        try:
            return fn(*(float(a) for a in args))
        except (ValueError, OverflowError) as exc:
            raise CalculationError(f"{fn.__name__}(): {exc}") from None

    return wrapped


FUNCTIONS: dict[str, Callable[..., Number]] = {
    "abs": abs, "round": lambda x, n=0: round(Fraction(x), _integer("round", n, 1000)) if not isinstance(x, float) else round(x, int(n)),
    "floor": math.floor, "ceil": math.ceil, "trunc": math.trunc, "sqrt": _exact_sqrt,
    "isqrt": lambda x: math.isqrt(_integer("isqrt", x)), "exp": _float_fn(math.exp), "log": _log, "ln": _log,
    "log2": lambda x: _log(x, 2), "log10": lambda x: _log(x, 10),
    **{name: _float_fn(getattr(math, name)) for name in (
        "sin", "cos", "tan", "asin", "acos", "atan", "atan2", "sinh", "cosh", "tanh", "degrees", "radians", "hypot")},
    "factorial": lambda n: math.factorial(_integer("factorial", n, MAX_FACTORIAL)),
    "comb": lambda n, k: math.comb(_integer("comb", n, 100_000), _integer("comb", k, 100_000)),
    "perm": lambda n, k: math.perm(_integer("perm", n, 100_000), _integer("perm", k, 100_000)),
    "gcd": lambda *xs: math.gcd(*(_integer("gcd", x) for x in xs)),
    "lcm": lambda *xs: math.lcm(*(_integer("lcm", x) for x in xs)),
    "min": min, "max": max, "frac": lambda a, b=1: _divide(Fraction(a), Fraction(b)),
}
CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}
BINARY_OPS: dict[type, Callable[[Number, Number], Number]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: _divide,
    ast.FloorDiv: lambda a, b: a // b if b != 0 else _divide(a, b),
    ast.Mod: lambda a, b: a % b if b != 0 else _divide(a, b), ast.Pow: _power,
}
UNARY_OPS: dict[type, Callable[[Number], Number]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def _literal(node: ast.Constant, source: str) -> Number:
    if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
        raise CalculationError(f"unsupported literal {node.value!r}: only numbers are allowed")
    if isinstance(node.value, int):
        return node.value
    text = (ast.get_source_segment(source, node) or repr(node.value)).replace("_", "")
    return Fraction(Decimal(text))  # exact value of the decimal literal as written


def _evaluate(node: ast.AST, source: str) -> Number:
    if isinstance(node, ast.Constant):
        return _literal(node, source)
    if isinstance(node, ast.BinOp) and type(node.op) in BINARY_OPS:
        left, right = _evaluate(node.left, source), _evaluate(node.right, source)
        return _check_size(BINARY_OPS[type(node.op)](left, right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in UNARY_OPS:
        return UNARY_OPS[type(node.op)](_evaluate(node.operand, source))
    if isinstance(node, ast.Name):
        if node.id in CONSTANTS:
            return CONSTANTS[node.id]
        raise CalculationError(f"unknown name {node.id!r}; constants: {', '.join(CONSTANTS)}")
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            called = ast.get_source_segment(source, node.func) or "?"
            raise CalculationError(f"unknown function {called!r}; available: {', '.join(sorted(FUNCTIONS))}")
        if node.keywords:
            raise CalculationError(f"{node.func.id}() takes positional arguments only")
        args = [_evaluate(arg, source) for arg in node.args]
        try:
            return _check_size(FUNCTIONS[node.func.id](*args))
        except TypeError as exc:
            raise CalculationError(f"{node.func.id}(): {exc}") from None
    segment = ast.get_source_segment(source, node) or type(node).__name__
    raise CalculationError(f"unsupported syntax {segment!r}: use numbers, + - * / // % **, parentheses and functions")


def _to_decimal(value: Number, precision: int) -> str:
    ctx = Context(prec=precision)
    if isinstance(value, float):
        return format(Context(prec=min(precision, 17)).create_decimal_from_float(value), "g")
    fraction = Fraction(value)
    return format(ctx.divide(Decimal(fraction.numerator), Decimal(fraction.denominator)), "g")


def calculate(expression: str, precision: int = 30) -> CalculationResult:
    """Evaluates an arithmetic expression exactly where possible."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise CalculationError(f"expression too long ({len(expression)} > {MAX_EXPRESSION_CHARS} characters)")
    if not 1 <= precision <= 1000:
        raise CalculationError("precision must be between 1 and 1000 significant digits")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise CalculationError(f"syntax error at column {exc.offset}: {exc.msg}") from None
    try:
        value = _check_size(_evaluate(tree.body, expression.strip()))
    except (ZeroDivisionError, OverflowError, ValueError) as exc:
        if isinstance(exc, CalculationError):
            raise
        raise CalculationError(str(exc)) from None
    if isinstance(value, float):
        return CalculationResult(expression=expression, result=repr(value), decimal=_to_decimal(value, precision),
                                 kind="float", exact=False)
    kind = "integer" if isinstance(value, int) else "fraction"
    return CalculationResult(expression=expression, result=_exact_text(value), decimal=_to_decimal(value, precision),
                             kind=kind, exact=True)


def _exact_text(value: int | Fraction) -> str:
    # Decimal() converts big ints without Python's 4300-digit int-to-str limit.
    if isinstance(value, int):
        return format(Decimal(value), "f")
    return f"{format(Decimal(value.numerator), 'f')}/{format(Decimal(value.denominator), 'f')}"
