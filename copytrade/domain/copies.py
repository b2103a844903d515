"""Follower rules: joining a portfolio (R-COPY-2 with R-ACC-2/3, R-LEAD-7/8/9) and copy settings
(R-COPY-1/3/6/12, R-X-3).

Percentages are stored as numbers of percent (``20`` = 20 %), amounts in the settlement asset
(USDT, valued 1:1 with USD).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from copytrade.domain.accounts import check_copy_slots, check_not_own_portfolio
from copytrade.domain.errors import RuleViolation
from copytrade.domain.inputs import decimal_field, percent_field
from copytrade.domain.leaders import (
    FUTURES,
    PRIVATE,
    SPOT,
    check_free_place,
    check_invitation_code,
    check_leverage,
)
from copytrade.domain.sizing import default_slippage_limit

FIXED_RATIO, FIXED_AMOUNT = "fixed_ratio", "fixed_amount"
SIZING_MODES = (FIXED_RATIO, FIXED_AMOUNT)
BELOW_MIN_POLICIES = ("skip", "round_up", "accumulate")
LEVERAGE_MIN, LEVERAGE_MAX = 1, 10
MIN_ALLOCATION = Decimal(10)  # product decision: below this no copied order can pass min-notional
MAX_SLIPPAGE_PCT = Decimal(10)
_SYMBOL = re.compile(r"^[A-Z0-9]{2,20}$")


@dataclass(frozen=True, slots=True)
class CopySettings:
    """A follower's validated risk settings for one copy (the columns of ``copies``)."""

    sizing_mode: str = FIXED_RATIO
    fixed_amount: Decimal | None = None
    below_min_policy: str = "skip"
    stop_loss_pct: Decimal | None = None
    take_profit_pct: Decimal | None = None
    max_cost_per_order: Decimal | None = None
    slippage_limit_pct: Decimal | None = None  # None: the SPEC default per pair
    position_take_profit_pct: Decimal | None = None
    position_stop_loss_pct: Decimal | None = None
    leverage: int = 1
    symbols: tuple[str, ...] | None = None  # allow-list; None: every symbol
    daily_loss_limit: Decimal | None = None
    close_only: bool = False

    def as_columns(self) -> dict:
        """Return the settings as keyword arguments of the ``Copy`` model."""
        return {
            "sizing_mode": self.sizing_mode,
            "fixed_amount": self.fixed_amount,
            "below_min_policy": self.below_min_policy,
            "stop_loss_pct": self.stop_loss_pct,
            "take_profit_pct": self.take_profit_pct,
            "max_cost_per_order": self.max_cost_per_order,
            "slippage_limit_pct": self.slippage_limit_pct,
            "position_take_profit_pct": self.position_take_profit_pct,
            "position_stop_loss_pct": self.position_stop_loss_pct,
            "leverage": self.leverage,
            "symbols": list(self.symbols) if self.symbols is not None else None,
            "daily_loss_limit": self.daily_loss_limit,
            "close_only": self.close_only,
        }


def _optional_positive(
    field: str, value: object, rule: str, *, percent: bool = False
) -> Decimal | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    number = percent_field(field, value, rule) if percent else decimal_field(field, value, rule)
    if number <= 0:
        raise RuleViolation(field, value, rule, f"{field} {number} must be above zero")
    return number


def validate_copy_settings(
    mode: str,
    allocation: Decimal,
    *,
    sizing_mode: str = FIXED_RATIO,
    fixed_amount: object = None,
    below_min_policy: str = "skip",
    stop_loss_pct: object = None,
    take_profit_pct: object = None,
    max_cost_per_order: object = None,
    slippage_limit_pct: object = None,
    position_take_profit_pct: object = None,
    position_stop_loss_pct: object = None,
    leverage: object = 1,
    symbols: Iterable[str] | None = None,
    daily_loss_limit: object = None,
    close_only: bool = False,
) -> CopySettings:
    """Check a follower's settings for a copy of a ``mode`` portfolio and return them normalised."""
    sizing = (sizing_mode or FIXED_RATIO).strip().lower().replace("-", "_")
    if sizing not in SIZING_MODES:
        raise RuleViolation(
            "sizing_mode",
            sizing_mode,
            "R-COPY-1",
            f"sizing mode {sizing_mode!r} is not fixed_ratio or fixed_amount",
        )
    amount = _optional_positive("fixed_amount", fixed_amount, "R-COPY-1")
    if sizing == FIXED_AMOUNT and amount is None:
        raise RuleViolation(
            "fixed_amount",
            fixed_amount,
            "R-COPY-1",
            "fixed-amount copying needs a fixed amount per order",
        )
    if sizing == FIXED_RATIO and amount is not None:
        raise RuleViolation(
            "fixed_amount",
            fixed_amount,
            "R-COPY-1",
            "a fixed amount applies only to sizing mode fixed_amount",
        )
    if amount is not None and amount > allocation:
        raise RuleViolation(
            "fixed_amount",
            amount,
            "R-COPY-1",
            f"fixed amount {amount} is above the allocation of {allocation}",
        )
    policy = (below_min_policy or "skip").strip().lower().replace("-", "_")
    if policy not in BELOW_MIN_POLICIES:
        raise RuleViolation(
            "below_min_policy",
            below_min_policy,
            "R-COPY-6",
            f"below-minimum policy {below_min_policy!r} is not one of {', '.join(BELOW_MIN_POLICIES)}",
        )
    stop_loss = _optional_positive("stop_loss_pct", stop_loss_pct, "R-COPY-3", percent=True)
    if stop_loss is not None and stop_loss > 100:
        raise RuleViolation(
            "stop_loss_pct",
            stop_loss_pct,
            "R-COPY-3",
            f"stop-loss {stop_loss} % of the allocation is above 100 %",
        )
    take_profit = _optional_positive("take_profit_pct", take_profit_pct, "R-COPY-3", percent=True)
    max_cost = _optional_positive("max_cost_per_order", max_cost_per_order, "R-COPY-12")
    slippage = _optional_positive(
        "slippage_limit_pct", slippage_limit_pct, "R-COPY-12", percent=True
    )
    if slippage is not None and slippage > MAX_SLIPPAGE_PCT:
        raise RuleViolation(
            "slippage_limit_pct",
            slippage_limit_pct,
            "R-COPY-12",
            f"slippage limit {slippage} % is above the maximum of {MAX_SLIPPAGE_PCT} %",
        )
    pos_tp = _optional_positive(
        "position_take_profit_pct", position_take_profit_pct, "R-COPY-12", percent=True
    )
    pos_sl = _optional_positive(
        "position_stop_loss_pct", position_stop_loss_pct, "R-COPY-12", percent=True
    )
    if pos_sl is not None and pos_sl > 100:
        raise RuleViolation(
            "position_stop_loss_pct",
            position_stop_loss_pct,
            "R-COPY-12",
            f"position stop-loss {pos_sl} % is above 100 %",
        )
    lev = check_copy_leverage(mode, leverage)
    allow = normalise_symbols(symbols)
    daily = _optional_positive("daily_loss_limit", daily_loss_limit, "R-X-3")
    if not isinstance(close_only, bool):
        raise RuleViolation("close_only", close_only, "R-X-3", "close_only must be true or false")
    return CopySettings(
        sizing_mode=sizing,
        fixed_amount=amount,
        below_min_policy=policy,
        stop_loss_pct=stop_loss,
        take_profit_pct=take_profit,
        max_cost_per_order=max_cost,
        slippage_limit_pct=slippage,
        position_take_profit_pct=pos_tp,
        position_stop_loss_pct=pos_sl,
        leverage=lev,
        symbols=allow,
        daily_loss_limit=daily,
        close_only=close_only,
    )


def check_copy_leverage(mode: str, leverage: object) -> int:
    """Return the copy's leverage: 1–10× for futures, 1 for spot (R-COPY-12)."""
    try:
        value = int(str(leverage).strip().lower().removesuffix("x"))
    except ValueError:
        raise RuleViolation(
            "leverage", leverage, "R-COPY-12", "leverage must be a whole number"
        ) from None
    if mode == SPOT and value != 1:
        raise RuleViolation(
            "leverage", leverage, "R-COPY-12", "spot copies trade without leverage (1x)"
        )
    if not LEVERAGE_MIN <= value <= LEVERAGE_MAX:
        raise RuleViolation(
            "leverage",
            leverage,
            "R-COPY-12",
            f"leverage {value}x is outside {LEVERAGE_MIN}x to {LEVERAGE_MAX}x",
        )
    return value


def normalise_symbols(symbols: Iterable[str] | None) -> tuple[str, ...] | None:
    """Return the symbol allow-list as exchange ids (``BTC/USDT`` → ``BTCUSDT``), or None for all."""
    if symbols is None:
        return None
    out: list[str] = []
    for raw in symbols:
        symbol = str(raw).strip().upper().replace("/", "").replace("-", "").split(":")[0]
        if not _SYMBOL.match(symbol):
            raise RuleViolation(
                "symbols", raw, "R-COPY-12", f"symbol {raw!r} is not a market symbol like BTCUSDT"
            )
        if symbol not in out:
            out.append(symbol)
    return tuple(out) or None


def default_slippage_limit_pct(base_asset: str, kind: str = "futures") -> Decimal:
    """Return the entry slippage limit in % when the follower sets none (``sizing``'s defaults:
    futures 0.5 % for BTC and ETH, else 1.5 %; spot 0.3 % and 0.5 %)."""
    return default_slippage_limit(base_asset.upper(), kind) * 100


def slippage_limit_pct(settings: CopySettings, base_asset: str, kind: str = "futures") -> Decimal:
    """Return the slippage limit that applies to an entry in a market of ``base_asset`` (R-COPY-12)."""
    if settings.slippage_limit_pct is not None:
        return settings.slippage_limit_pct
    return default_slippage_limit_pct(base_asset, kind)


@dataclass(frozen=True, slots=True)
class JoinRequest:
    """Everything R-COPY-2 looks at when a follower asks to copy a portfolio."""

    follower_person_id: int
    leader_person_id: int
    portfolio_status: str
    portfolio_listed: bool
    mode: str
    visibility: str
    invitation_code: str | None
    given_code: str | None
    active_followers: int
    follower_cap: int
    allocation: object
    spot_balance: Decimal
    follower_active_copies: int
    already_copying: bool = False
    leverage: int = 1
    aum: Decimal = Decimal(0)


def check_join(request: JoinRequest) -> Decimal:
    """Check a join request (R-COPY-2, R-ACC-2, R-ACC-3, R-LEAD-7/8/9); return the allocation."""
    if request.portfolio_status != "active":
        raise RuleViolation(
            "portfolio",
            request.portfolio_status,
            "R-COPY-2",
            f"the portfolio is {request.portfolio_status}; it takes no followers",
        )
    if not request.portfolio_listed:
        raise RuleViolation(
            "portfolio",
            "offline",
            "R-LEAD-9",
            "the portfolio was taken offline and takes no followers",
        )
    check_not_own_portfolio(request.follower_person_id, request.leader_person_id)
    if request.already_copying:
        raise RuleViolation(
            "portfolio",
            "already copied",
            "R-COPY-2",
            "this person already has an active copy of this portfolio",
        )
    check_copy_slots(request.follower_active_copies)
    check_free_place(request.active_followers, request.follower_cap)
    if request.visibility == PRIVATE:
        check_invitation_code(request.given_code, request.invitation_code)
    allocation = decimal_field("allocation", request.allocation, "R-COPY-2")
    if allocation < MIN_ALLOCATION:
        raise RuleViolation(
            "allocation",
            allocation,
            "R-COPY-2",
            f"allocation {allocation} USDT is below the minimum of {MIN_ALLOCATION} USDT",
        )
    if allocation > request.spot_balance:
        raise RuleViolation(
            "allocation",
            allocation,
            "R-COPY-2",
            f"allocation {allocation} USDT is more than the spot balance of {request.spot_balance} USDT",
        )
    if request.mode == FUTURES:
        check_leverage(request.aum + allocation, request.leverage)
    return allocation


# -- editing a running copy -----------------------------------------------------------------

# What a follower may change after starting (as Binance's copy settings): risk limits, leverage,
# symbols and the below-minimum policy. Sizing mode and the fixed amount stay as started.
EDITABLE = (
    "stop_loss_pct",
    "take_profit_pct",
    "max_cost_per_order",
    "slippage_limit_pct",
    "leverage",
    "symbols",
    "below_min_policy",
)
# Given as the value of a setting that may be absent, "off" removes it (slippage: back to the
# default of the pair; symbols: every symbol).
OFF = "off"
_CLEARABLE = frozenset(
    {"stop_loss_pct", "take_profit_pct", "max_cost_per_order", "slippage_limit_pct", "symbols"}
)


def edit_copy_settings(
    mode: str, allocation: Decimal, current: CopySettings, changes: dict[str, object]
) -> CopySettings:
    """Return ``current`` with ``changes`` applied and every setting checked again (R-COPY-3/6/12).

    Unknown or fixed fields are refused, and so is an edit that changes nothing (R-IN-2).
    """
    given = {k: v for k, v in changes.items() if v is not None}
    if not given:
        raise RuleViolation(
            "settings", "none", "R-IN-2", f"give at least one of {', '.join(EDITABLE)}"
        )
    for field in given:
        if field not in EDITABLE:
            raise RuleViolation(
                field, given[field], "R-IN-2", f"{field} cannot be changed on a running copy"
            )
    merged = {
        "sizing_mode": current.sizing_mode,
        "fixed_amount": current.fixed_amount,
        "below_min_policy": current.below_min_policy,
        "stop_loss_pct": current.stop_loss_pct,
        "take_profit_pct": current.take_profit_pct,
        "max_cost_per_order": current.max_cost_per_order,
        "slippage_limit_pct": current.slippage_limit_pct,
        "position_take_profit_pct": current.position_take_profit_pct,
        "position_stop_loss_pct": current.position_stop_loss_pct,
        "leverage": current.leverage,
        "symbols": current.symbols,
        "daily_loss_limit": current.daily_loss_limit,
        "close_only": current.close_only,
    }
    for field, value in given.items():
        is_off = isinstance(value, str) and value.strip().lower() == OFF
        if field == "symbols" and not isinstance(value, str):
            values = list(value)  # type: ignore[call-overload]
            is_off = [str(v).strip().lower() for v in values] == [OFF]
            value = values
        if is_off:
            if field not in _CLEARABLE:
                raise RuleViolation(field, value, "R-IN-2", f"{field} cannot be switched off")
            merged[field] = None
        else:
            merged[field] = value
    updated = validate_copy_settings(mode, allocation, **merged)
    if updated == current:
        raise RuleViolation("settings", given, "R-IN-2", "these are the copy's settings already")
    return updated


def changed_settings(before: CopySettings, after: CopySettings) -> dict[str, list[str | None]]:
    """Return ``{field: [old, new]}`` of the settings that differ, as text (for the audit log)."""

    def text(value: object) -> str | None:
        if value is None:
            return None
        if isinstance(value, tuple):
            return ",".join(value)
        if isinstance(value, Decimal):  # stored amounts carry 8 decimals: 30.00000000 → 30
            return format(value.normalize(), "f")
        return str(value)

    out = {}
    for field in EDITABLE:
        old, new = getattr(before, field), getattr(after, field)
        if old != new:
            out[field] = [text(old), text(new)]
    return out
