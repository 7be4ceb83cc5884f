from __future__ import annotations

import pytest

from braid.tools.calculator import CalculationError, calculate


@pytest.mark.parametrize("expression, result, kind", [
    ("0.1 + 0.2", "3/10", "fraction"),
    ("2**100", "1267650600228229401496703205376", "integer"),
    ("1/3 + 1/6", "1/2", "fraction"),
    ("sqrt(16/9)", "4/3", "fraction"),
    ("factorial(25)", "15511210043330985984000000", "integer"),
    ("-7 // 2, ", None, None),
    ("7 % 3 + gcd(12, 18) * lcm(4, 6)", "73", "integer"),
    ("10**-3", "1/1000", "fraction"),
    ("round(2.675, 2)", "67/25", "fraction"),  # exact decimals: 2.675 really is 2.675 (floats give 2.67)
    ("1_000 * 3", "3000", "integer"),
])
def test_exact_results(expression, result, kind):
    if result is None:
        with pytest.raises(CalculationError, match="unsupported syntax"):
            calculate(expression)
        return
    out = calculate(expression)
    assert (out.result, out.kind, out.exact) == (result, kind, True)


def test_irrational_results_are_floats_with_a_decimal_form():
    out = calculate("sqrt(2)", precision=10)
    assert out.kind == "float" and not out.exact and out.decimal == "1.414213562"
    assert calculate("log(8, 2)").decimal == "3" and calculate("1/3", precision=5).decimal == "0.33333"


def test_huge_integers_print_in_full():
    assert len(calculate("10**5000").result) == 5001


@pytest.mark.parametrize("expression, message", [
    ("__import__('os').system('id')", "unknown function"),
    ("().__class__", "unsupported syntax"),
    ("x + 1", "unknown name 'x'"),
    ("'a' * 3", "only numbers"),
    ("1/0", "division by zero"),
    ("2**10**10", "power too large"),
    ("factorial(10**6)", "too large"),
    ("factorial(2.5)", "needs an integer"),
    ("sqrt(-1)", "negative"),
    ("(-8)**(1/3)", "complex"),
    ("1 +", "syntax error"),
    ("[1, 2]", "unsupported syntax"),
    ("sin(x=1)", "positional"),
    ("lambda: 1", "unsupported syntax"),
    ("9" * 3000, "too long"),
])
def test_rejected_expressions_say_why(expression, message):
    with pytest.raises(CalculationError, match=message):
        calculate(expression)
