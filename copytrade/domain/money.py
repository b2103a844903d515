"""Exact money: Decimal in the domain, integer units of 1e-8 in storage.

SQLite has no exact decimal type and validation and dbt sum in SQL, so every amount is stored as
a BIGINT count of 1e-8 units (``SCALE``). Conversions refuse anything inexact or out of range
instead of rounding silently; rounding is always explicit and, for what the platform takes,
downwards (R-SET-10).
"""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_UP, Decimal, InvalidOperation

SCALE = 8
UNIT = Decimal(1).scaleb(-SCALE)  # 0.00000001
E8 = 10**SCALE  # units of 1e-8 in one whole: an amount × E8 is its stored BIGINT
BIGINT_MAX = 2**63 - 1
ZERO = Decimal(0)


def to_decimal(value: object, field: str = "amount") -> Decimal:
    """Return ``value`` as a Decimal; floats are refused because they are not exact."""
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, bool | float):
        raise TypeError(f"{field}: {value!r} is a {type(value).__name__}; money must be exact")
    elif isinstance(value, int | str):
        try:
            result = (
                Decimal(str(value).strip().replace(",", ""))
                if isinstance(value, str)
                else Decimal(value)
            )
        except InvalidOperation as exc:
            raise ValueError(f"{field}: {value!r} is not a number") from exc
    else:
        raise TypeError(f"{field}: {value!r} is not a number")
    if not result.is_finite():
        raise ValueError(f"{field}: {value!r} is not a finite number")
    return result


def round_down(value: Decimal, places: int = SCALE) -> Decimal:
    """Truncate towards zero to ``places`` decimals (never takes more than the formula gives)."""
    return value.quantize(UNIT if places == SCALE else Decimal(1).scaleb(-places), ROUND_DOWN)


def round_up(value: Decimal, places: int = SCALE) -> Decimal:
    """Round away from zero to ``places`` decimals."""
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_UP)


def floor_to_step(value: Decimal, step: Decimal) -> Decimal:
    """Return the largest multiple of ``step`` not above ``value`` (for value ≥ 0)."""
    if step <= 0:
        return value
    return (value // step) * step


def to_units(value: Decimal | int | str, field: str = "amount") -> int:
    """Convert an exact amount to integer 1e-8 units; refuse sub-unit digits and BIGINT overflow."""
    amount = to_decimal(value, field)
    scaled = amount.scaleb(SCALE)
    if scaled != scaled.to_integral_value():
        raise ValueError(
            f"{field}: {amount} has more than {SCALE} decimals; round it explicitly first"
        )
    units = int(scaled)
    if abs(units) > BIGINT_MAX:
        raise ValueError(
            f"{field}: {amount} is too large to store exactly (limit {from_units(BIGINT_MAX)})"
        )
    return units


def from_units(units: int) -> Decimal:
    """Convert integer 1e-8 units back to an exact Decimal."""
    return Decimal(int(units)).scaleb(-SCALE)
