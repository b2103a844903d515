"""Parsing of user-typed values into exact types, refusing with the field, the value and the rule (R-IN-2)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from copytrade.domain.errors import RuleViolation
from copytrade.domain.money import SCALE

MAX_DIGITS = 18  # 1e10 with 8 decimals stays far inside BIGINT units


def decimal_field(field: str, value: object, rule: str = "R-IN-2") -> Decimal:
    """Return ``value`` as an exact Decimal with at most 8 decimals, else refuse naming ``field``.

    Strings may carry thousands separators ("1,000") and a trailing ``%`` is *not* accepted here
    (see ``percent_field``). Floats are refused: they are not exact.
    """
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, (bool, float)):
        raise RuleViolation(
            field, value, rule, f"{field} {value!r} must be an exact decimal, not a float"
        )
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        text = value.strip().replace(",", "").replace("_", "")
        try:
            result = Decimal(text)
        except InvalidOperation:
            raise RuleViolation(field, value, rule, f"{field} {value!r} is not a number") from None
    else:
        raise RuleViolation(field, value, rule, f"{field} {value!r} is not a number")
    if not result.is_finite():
        raise RuleViolation(field, value, rule, f"{field} {value!r} is not a finite number")
    if result.as_tuple().exponent < -SCALE:  # type: ignore[operator]
        raise RuleViolation(field, value, rule, f"{field} {value} has more than {SCALE} decimals")
    if abs(result) >= Decimal(10) ** (MAX_DIGITS - SCALE):
        raise RuleViolation(field, value, rule, f"{field} {value} is too large")
    return result


def percent_field(field: str, value: object, rule: str = "R-IN-2") -> Decimal:
    """Return a percentage given as ``20``, ``"20"`` or ``"20%"`` as the number of percent (20)."""
    if isinstance(value, str) and value.strip().endswith("%"):
        value = value.strip()[:-1]
    return decimal_field(field, value, rule)


def ratio_field(field: str, value: object, rule: str = "R-IN-2") -> Decimal:
    """Return a ratio given as a fraction (``0.15``) or a percentage (``"15%"``) as a fraction."""
    if isinstance(value, str) and value.strip().endswith("%"):
        pct = decimal_field(field, value.strip()[:-1], rule)
        result = pct / 100
        if result.as_tuple().exponent < -SCALE:  # type: ignore[operator]
            raise RuleViolation(field, value, rule, f"{field} {value} has too many decimals")
        return result
    return decimal_field(field, value, rule)
