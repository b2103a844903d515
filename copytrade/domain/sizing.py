"""Size every follower order of one leader fill in one pass (R-COPY-1/4/6/7/12, R-LEAD-8, R-X-3).

The copies of a lead portfolio are held as columns (``CopyBook``: one numpy array per setting,
one element per copy), and a leader fill is sized for all of them with a few dozen array
operations instead of a Python loop per copy.

Exactness: every amount is an integer count of 1e-8 units (the ledger's scale) and every
quantity decision is an integer number of lot steps, so every division is a floor division of
integers and "round down to the step" is exact. Products that could exceed int64 are detected
first (a float64 magnitude check with a wide margin) and then computed on Python integers
(numpy object arrays), so the result is the same exact integer either way, only slower.
``size_reference`` is the same rule written for one copy in ``Decimal``; tests check both agree.

Policy decisions the SPEC leaves open (see docs/engine.md):
- Ratio mode scales by copy equity / leader equity, both in the quote asset.
- Fixed amount: the fixed notional at the leader's price is copied once per leader *order*, on
  its first fill; later partial fills of that order are recorded as skipped.
- Balance (R-COPY-7): an opening costs quantity × reference price × (1 + taker fee + the copy's
  slippage limit) of cash (spot) or of margin at the copy's leverage (futures).
- Reductions never need a balance, ignore close-only, pause and the symbol list (they only lower
  risk), and are pro rata to the follower's *own* position, never more than it holds (R-COPY-4).
  A leader's full close closes the follower's whole position.
- Below the minimum after rounding (R-COPY-6): ``skip``; ``round_up`` sends the market minimum
  when the caps (balance, maximum cost, position for reductions) allow it; ``accumulate`` carries
  the unsent exact size (1e-8 units) per copy and symbol for openings and sends whole steps once
  they pass the filters (reductions below the minimum are skipped under ``accumulate``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal

import numpy as np

from copytrade.domain.markets import DEFAULT_TAKER_FEE, Market
from copytrade.domain.money import E8, UNIT, to_units

_SAFE = 4.0e18  # below 2**63 ≈ 9.22e18 with a wide margin for float64 rounding of the check

# Outcome codes of one copy for one leader fill.
SEND = 0
SKIP_SYMBOL = 1
SKIP_CLOSE_ONLY = 2
SKIP_PAUSED = 3
SKIP_LEVERAGE = 4
SKIP_SLIPPAGE = 5
SKIP_BELOW_MIN = 6
SKIP_BALANCE = 7
SKIP_NO_POSITION = 8
SKIP_ACCUMULATING = 9
SKIP_MAX_COST = 10
SKIP_FIXED_DONE = 11

REASON_CODES = {
    SKIP_SYMBOL: "symbol_not_allowed",
    SKIP_CLOSE_ONLY: "close_only",
    SKIP_PAUSED: "daily_loss_limit",
    SKIP_LEVERAGE: "leverage_cap",
    SKIP_SLIPPAGE: "slippage_limit",
    SKIP_BELOW_MIN: "below_minimum",
    SKIP_BALANCE: "insufficient_balance",
    SKIP_NO_POSITION: "no_position",
    SKIP_ACCUMULATING: "accumulating",
    SKIP_MAX_COST: "max_cost",
    SKIP_FIXED_DONE: "fixed_amount_order_copied",
}
REASON_TEXT = {
    SKIP_SYMBOL: "symbol is not in the copy's allow-list (R-COPY-12)",
    SKIP_CLOSE_ONLY: "copy is in close-only mode and this fill opens (R-X-3)",
    SKIP_PAUSED: "daily loss limit reached; openings paused for the rest of the UTC day (R-X-3)",
    SKIP_LEVERAGE: "leverage above 5x is refused once the portfolio's AUM reaches 100,000 USD (R-LEAD-8)",
    SKIP_SLIPPAGE: "price moved beyond the copy's entry slippage limit (R-COPY-12)",
    SKIP_BELOW_MIN: "size below the market minimum after rounding (R-COPY-6)",
    SKIP_BALANCE: "balance does not cover an order that passes the filters (R-COPY-7)",
    SKIP_NO_POSITION: "follower holds no copied position to reduce (R-COPY-4)",
    SKIP_ACCUMULATING: "below the minimum; remainder carried by the accumulate policy (R-COPY-6)",
    SKIP_MAX_COST: "maximum cost per order leaves less than the market minimum (R-COPY-12)",
    SKIP_FIXED_DONE: "fixed amount already copied for this leader order (R-COPY-1)",
}

POLICY_SKIP, POLICY_ROUND_UP, POLICY_ACCUMULATE = 0, 1, 2
POLICY_CODES = {"skip": POLICY_SKIP, "round_up": POLICY_ROUND_UP, "accumulate": POLICY_ACCUMULATE}
LEVERAGE_CAP = 5
# The exchange checks the minimum notional at its own price (mid or mark), which can sit below
# the leader's fill price: minimums are computed at the reference price less this margin.
MIN_NOTIONAL_MARGIN = Decimal("0.99")


# R-COPY-12 entry slippage defaults, as Binance's copy trading: (BTC/ETH pairs, other pairs).
DEFAULT_SLIPPAGE = {
    "futures": (Decimal("0.005"), Decimal("0.015")),
    "spot": (Decimal("0.003"), Decimal("0.005")),
}


def default_slippage_limit(symbol: str, kind: str = "futures") -> Decimal:
    """Return the SPEC's default entry slippage limit as a fraction (R-COPY-12): futures 0.5 % for
    BTC/ETH pairs, else 1.5 %; spot 0.3 % and 0.5 %."""
    major, other = DEFAULT_SLIPPAGE[kind]
    return major if symbol.startswith(("BTC", "ETH")) else other


@dataclass(slots=True)
class CopySettings:
    """One copy's sizing settings, as plain values (the engine builds these from ``models.Copy``)."""

    copy_id: int
    equity: Decimal  # copy equity in the quote asset (ratio mode scale numerator)
    cash: Decimal  # free quote balance (spot) or free margin (futures)
    ratio_mode: bool = True
    fixed_amount: Decimal = Decimal(0)
    max_cost: Decimal | None = None
    slippage_limit: Decimal | None = None  # fraction; None: SPEC default for the symbol
    leverage: int = 1
    policy: str = "skip"
    close_only: bool = False
    paused: bool = False
    symbols: frozenset[str] | None = None
    taker_fee: Decimal = DEFAULT_TAKER_FEE["spot"]


@dataclass(frozen=True, slots=True)
class FillSpec:
    """One leg of a leader fill, as sizing needs it."""

    symbol: str
    side: str  # buy | sell
    opening: bool
    quantity: Decimal  # of this leg
    price: Decimal  # leader's fill price
    leader_position_before: Decimal  # absolute leader position before this leg (reductions)
    leader_equity: Decimal
    reference_price: Decimal  # current price the follower order will meet
    market: Market
    aum_capped: bool = False  # portfolio AUM ≥ 100,000 USD (R-LEAD-8)
    first_fill_of_order: bool = True


@dataclass(slots=True)
class Sizing:
    """Decisions for every copy of the book: quantity in 1e-8 units (0 when skipped) and a code."""

    copy_ids: np.ndarray
    quantity_units: np.ndarray  # int64, a whole number of steps
    computed_units: np.ndarray  # int64, exact size before rounding and caps (floor to 1e-8)
    codes: np.ndarray  # int8, SEND or a SKIP_* code
    reduce_only: bool

    def __len__(self) -> int:
        return len(self.copy_ids)


def _units(value: Decimal) -> int:
    return to_units(value.quantize(UNIT, rounding="ROUND_DOWN"))


def _muldiv(a, b, c):
    """Return floor(a × b / c) elementwise, exactly (int64 when safe, Python integers otherwise)."""
    fa = np.abs(np.asarray(a, dtype=np.float64))
    fb = np.abs(np.asarray(b, dtype=np.float64))
    if fa.size and fb.size and float(np.max(fa) * np.max(fb)) < _SAFE:
        return (np.asarray(a, dtype=np.int64) * np.asarray(b, dtype=np.int64)) // np.asarray(
            c, dtype=np.int64
        )
    out = (np.asarray(a).astype(object) * np.asarray(b).astype(object)) // np.asarray(c).astype(
        object
    )
    return np.asarray(out, dtype=np.int64) if np.ndim(out) else np.int64(out)


def _scale(a: int, b: np.ndarray, c: int) -> np.ndarray:
    """Return floor(a × b / c) for a scalar ``a`` ≥ 0 and a column ``b`` ≥ 0, exactly.

    The hot-path variant of ``_muldiv``: one reduction for the overflow check.
    """
    if not len(b) or float(a) * float(b.max()) < _SAFE:
        return (a * b) // c
    return np.asarray((b.astype(object) * a) // c, dtype=np.int64)


@dataclass
class CopyBook:
    """Active copies of one lead portfolio as columns, plus their positions per symbol (units)."""

    copy_ids: np.ndarray
    equity: np.ndarray
    cash: np.ndarray
    ratio_mode: np.ndarray
    fixed_amount: np.ndarray
    max_cost: np.ndarray  # 0: no limit
    slippage: np.ndarray  # fraction in 1e-8 units; -1: SPEC default
    leverage: np.ndarray
    policy: np.ndarray
    close_only: np.ndarray
    paused: np.ndarray
    fee: np.ndarray  # taker fee fraction in 1e-8 units
    symbols: list[frozenset[str] | None]
    positions: dict[str, np.ndarray] = field(default_factory=dict)  # signed units
    accumulated: dict[str, np.ndarray] = field(default_factory=dict)  # units
    _allow: dict[str, np.ndarray] = field(default_factory=dict)
    _derived: dict[str, tuple] = field(default_factory=dict)
    index: dict[int, int] = field(default_factory=dict)

    def slippage_columns(self, symbol: str, kind: str = "futures") -> tuple[np.ndarray, np.ndarray]:
        """Return (slippage limit, 1 + fee + slippage limit) in 1e-8 units for ``symbol`` (cached)."""
        cached = self._derived.get((symbol, kind))
        if cached is None:
            default = _units(default_slippage_limit(symbol, kind))
            slip = np.where(self.slippage < 0, default, self.slippage)
            cached = self._derived[(symbol, kind)] = (slip, E8 + self.fee + slip)
        return cached

    @classmethod
    def build(cls, settings: list[CopySettings]) -> CopyBook:
        """Build the columns from per-copy settings."""
        n = len(settings)

        def col(values, dtype=np.int64):
            return np.fromiter(values, dtype=dtype, count=n)

        book = cls(
            copy_ids=col(s.copy_id for s in settings),
            equity=col(_units(max(s.equity, Decimal(0))) for s in settings),
            cash=col(_units(max(s.cash, Decimal(0))) for s in settings),
            ratio_mode=col((s.ratio_mode for s in settings), bool),
            fixed_amount=col(_units(s.fixed_amount or Decimal(0)) for s in settings),
            max_cost=col(_units(s.max_cost or Decimal(0)) for s in settings),
            slippage=col(
                (-1 if s.slippage_limit is None else _units(s.slippage_limit)) for s in settings
            ),
            leverage=col(max(1, s.leverage) for s in settings),
            policy=col((POLICY_CODES[s.policy] for s in settings), np.int8),
            close_only=col((s.close_only for s in settings), bool),
            paused=col((s.paused for s in settings), bool),
            fee=col(_units(s.taker_fee) for s in settings),
            symbols=[s.symbols for s in settings],
        )
        book.index = {int(c): i for i, c in enumerate(book.copy_ids)}
        return book

    def __len__(self) -> int:
        return len(self.copy_ids)

    def position(self, symbol: str) -> np.ndarray:
        """Return the signed position column of ``symbol`` (created at zero)."""
        pos = self.positions.get(symbol)
        if pos is None:
            pos = self.positions[symbol] = np.zeros(len(self), dtype=np.int64)
        return pos

    def accumulator(self, symbol: str) -> np.ndarray:
        acc = self.accumulated.get(symbol)
        if acc is None:
            acc = self.accumulated[symbol] = np.zeros(len(self), dtype=np.int64)
        return acc

    def allowed(self, symbol: str) -> np.ndarray:
        """Return the allow-list mask of ``symbol`` (cached per symbol)."""
        mask = self._allow.get(symbol)
        if mask is None:
            mask = self._allow[symbol] = np.fromiter(
                (s is None or symbol in s for s in self.symbols), dtype=bool, count=len(self)
            )
        return mask


def _min_steps(market: Market, price: Decimal, step: int, *, reduce_only: bool) -> int:
    """Return the minimum order size in steps at ``price`` (reduce-only futures skip the notional)."""
    if reduce_only and market.kind == "futures":
        qty = max(market.market_min_qty, market.market_step_size)
    else:
        qty = market.min_order_quantity(price * MIN_NOTIONAL_MARGIN)
    return -(-_units(qty) // step)


def size_fill(book: CopyBook, fill: FillSpec) -> Sizing:
    """Decide the follower order of every copy in ``book`` for one leader fill leg.

    Mutates only the accumulate remainders of ``book`` (positions and cash change when fills
    come back, not here).
    """
    market = fill.market
    n = len(book)
    step = _units(market.market_step_size) or 1
    q = _units(fill.quantity)
    price = _units(fill.price)
    ref = _units(fill.reference_price) or price
    futures = market.kind == "futures"
    codes = np.zeros(n, dtype=np.int8)
    pos = book.position(fill.symbol)
    reduce_only = futures and not fill.opening
    kmin = _min_steps(market, fill.reference_price or fill.price, step, reduce_only=reduce_only)
    max_steps = _units(market.market_max_qty) // step if market.market_max_qty else 0

    if fill.opening:
        # R-COPY-1: exact size in 1e-8 units before rounding.
        computed = _scale(q, book.equity, max(_units(fill.leader_equity), 1))
        if not book.ratio_mode.all():
            fixed = _scale(E8, book.fixed_amount, max(price, 1))
            computed = np.where(book.ratio_mode, computed, fixed)
        if not fill.first_fill_of_order:
            computed = np.where(book.ratio_mode, computed, 0)
        raw = computed // step
        # R-COPY-7 balance and R-COPY-12 maximum cost, at the reference price. The cash cost of
        # one step is buffered by the taker fee and the copy's slippage limit.
        slip, fee_slip = book.slippage_columns(fill.symbol, market.kind)
        plain_cost = max((ref * step) // E8, 1)  # one step at the reference price, floor 1e-8
        unit_cost = np.maximum(_scale(plain_cost, fee_slip, E8), 1)
        budget = book.cash * book.leverage if futures else book.cash
        by_cash = budget // unit_cost
        by_cost = np.where(book.max_cost > 0, book.max_cost // plain_cost, np.iinfo(np.int64).max)
        cap = np.minimum(by_cash, by_cost)
        if max_steps:
            cap = np.minimum(cap, max_steps)
        k = np.minimum(raw, cap)
        policy = book.policy
        below = raw < kmin
        # round_up: the minimum when the caps allow it
        up = below & (policy == POLICY_ROUND_UP) & (cap >= kmin) & (computed > 0)
        k = np.where(up, kmin, k)
        # accumulate: add the exact computed size, send whole steps once past the minimum
        accm = (policy == POLICY_ACCUMULATE) & below & (codes == SEND)
        if accm.any():
            acc = book.accumulator(fill.symbol)
            total = acc + np.where(accm, computed, 0)
            ready = accm & (total // step >= kmin) & (cap >= kmin)
            k = np.where(ready, np.minimum(total // step, cap), k)
            new_acc = np.where(ready, total - k * step, total)
            # Book the remainder only for copies that are otherwise eligible (masked below).
            pending = accm.copy()
        else:
            ready = np.zeros(n, dtype=bool)
            pending = None
        codes = np.where(
            (codes == SEND) & below & ~up & ~ready,
            np.where(
                (policy == POLICY_ACCUMULATE) & (computed > 0), SKIP_ACCUMULATING, SKIP_BELOW_MIN
            ),
            codes,
        ).astype(np.int8)
        short = (codes == SEND) & (k < kmin)  # caps pushed a valid size under the minimum
        codes[short & (by_cost < kmin) & (by_cost <= by_cash)] = SKIP_MAX_COST
        codes[short & (codes == SEND)] = SKIP_BALANCE
        # Eligibility gates, strongest reason last so it wins.
        if fill.reference_price and price:
            move = (ref - price) if fill.side == "buy" else (price - ref)
            moved = _muldiv(move, E8, price) if move > 0 else 0
            codes[(moved > slip) & (moved > 0)] = SKIP_SLIPPAGE
        if not fill.first_fill_of_order:
            codes[~book.ratio_mode] = SKIP_FIXED_DONE
        if futures and fill.aum_capped:
            codes[book.leverage > LEVERAGE_CAP] = SKIP_LEVERAGE
        codes[book.paused] = SKIP_PAUSED
        codes[book.close_only] = SKIP_CLOSE_ONLY
        codes[~book.allowed(fill.symbol)] = SKIP_SYMBOL
        if pending is not None:
            keep = pending & ((codes == SEND) | (codes == SKIP_ACCUMULATING))
            acc = book.accumulator(fill.symbol)
            acc[keep] = new_acc[keep]
        qty = np.where(codes == SEND, k * step, 0)
        return Sizing(book.copy_ids, qty.astype(np.int64), computed.astype(np.int64), codes, False)

    # Reduction or close (R-COPY-4): the same fraction of the follower's own position.
    sign = 1 if fill.side == "sell" else -1  # a sell reduces a long (+), a buy reduces a short (-)
    held = np.maximum(pos * sign, 0)
    before = _units(fill.leader_position_before)
    computed = held.copy() if before <= 0 or q >= before else _scale(q, held, before)
    k = computed // step
    held_steps = held // step
    below = (k < kmin) & (held > 0)
    up = below & (book.policy == POLICY_ROUND_UP) & (held_steps >= kmin)
    k = np.where(up, kmin, k)
    if max_steps:
        k = np.minimum(k, max_steps)
    codes[below & ~up] = SKIP_BELOW_MIN
    codes[held <= 0] = SKIP_NO_POSITION
    if q >= before:
        # The leader closed: drop any accumulated opening remainder of the copies.
        acc = book.accumulated.get(fill.symbol)
        if acc is not None:
            acc[:] = 0
    qty = np.where(codes == SEND, k * step, 0)
    return Sizing(book.copy_ids, qty.astype(np.int64), computed.astype(np.int64), codes, futures)


# ------------------------------------------------------------------------------------------------
# The same rules for one copy in Decimal: the readable reference the vectorised code must match.


def size_reference(
    s: CopySettings,
    fill: FillSpec,
    position: Decimal = Decimal(0),
    accumulated: Decimal = Decimal(0),
) -> tuple[Decimal, str | None, Decimal]:
    """Return (quantity, skip reason code or None, new accumulated remainder) for one copy."""
    m = fill.market
    step = m.market_step_size
    futures = m.kind == "futures"
    ref = fill.reference_price or fill.price
    q1 = UNIT

    def floor_steps(x: Decimal) -> Decimal:
        return (x // step) * step

    if not fill.opening:
        reduce_only = futures
        min_qty = (
            max(m.market_min_qty, step)
            if reduce_only
            else m.min_order_quantity(ref * MIN_NOTIONAL_MARGIN)
        )
        min_qty = (min_qty / step).to_integral_value(rounding=ROUND_CEILING) * step
        held = max(position if fill.side == "sell" else -position, Decimal(0))
        if held <= 0:
            return Decimal(0), "no_position", accumulated
        if fill.quantity >= fill.leader_position_before or fill.leader_position_before <= 0:
            computed = held
        else:
            computed = (held * fill.quantity / fill.leader_position_before).quantize(
                q1, rounding="ROUND_FLOOR"
            )
        k = floor_steps(computed)
        if k < min_qty:
            if s.policy == "round_up" and floor_steps(held) >= min_qty:
                k = min_qty
            else:
                return Decimal(0), "below_minimum", accumulated
        if m.market_max_qty:
            k = min(k, floor_steps(m.market_max_qty))
        return k, None, accumulated

    min_qty = m.min_order_quantity(ref * MIN_NOTIONAL_MARGIN)
    min_qty = (min_qty / step).to_integral_value(rounding=ROUND_CEILING) * step
    gate = None
    if s.symbols is not None and fill.symbol not in s.symbols:
        gate = "symbol_not_allowed"
    elif s.close_only:
        gate = "close_only"
    elif s.paused:
        gate = "daily_loss_limit"
    elif futures and fill.aum_capped and s.leverage > LEVERAGE_CAP:
        gate = "leverage_cap"
    elif not s.ratio_mode and not fill.first_fill_of_order:
        gate = "fixed_amount_order_copied"
    slip = (
        s.slippage_limit
        if s.slippage_limit is not None
        else default_slippage_limit(fill.symbol, m.kind)
    )
    slip = slip.quantize(q1, rounding="ROUND_FLOOR")
    move = (ref - fill.price) if fill.side == "buy" else (fill.price - ref)
    if gate is None and move > 0:
        moved = (move / fill.price).quantize(q1, rounding="ROUND_FLOOR")
        if moved > slip:
            gate = "slippage_limit"
    if s.ratio_mode:
        eq = max(s.equity, Decimal(0)).quantize(q1, rounding="ROUND_FLOOR")
        computed = (fill.quantity * eq / fill.leader_equity).quantize(q1, rounding="ROUND_FLOOR")
    else:
        computed = (s.fixed_amount / fill.price).quantize(q1, rounding="ROUND_FLOOR")
    raw = floor_steps(computed)
    fee = s.taker_fee.quantize(q1, rounding="ROUND_FLOOR")
    plain = max((ref * step).quantize(q1, rounding="ROUND_FLOOR"), q1)
    unit_cost = max((plain * (1 + fee + slip)).quantize(q1, rounding="ROUND_FLOOR"), q1)
    cash = max(s.cash, Decimal(0)).quantize(q1, rounding="ROUND_FLOOR")
    budget = cash * s.leverage if futures else cash
    by_cash = (budget // unit_cost) * step
    by_cost = (s.max_cost // plain) * step if s.max_cost else None
    cap = by_cash if by_cost is None else min(by_cash, by_cost)
    if m.market_max_qty:
        cap = min(cap, floor_steps(m.market_max_qty))
    k = min(raw, cap)
    new_acc = accumulated
    if raw < min_qty:
        if s.policy == "round_up" and cap >= min_qty and computed > 0:
            k = min_qty
        elif s.policy == "accumulate":
            total = accumulated + computed
            if floor_steps(total) >= min_qty and cap >= min_qty:
                k = min(floor_steps(total), cap)
                new_acc = total - k
            else:
                new_acc = total
                if gate:
                    return Decimal(0), gate, accumulated
                return Decimal(0), "accumulating" if computed > 0 else "below_minimum", new_acc
        else:
            return Decimal(0), gate or "below_minimum", accumulated
    if gate:
        return Decimal(0), gate, accumulated
    if k < min_qty:
        if by_cost is not None and by_cost < min_qty and by_cost <= by_cash:
            return Decimal(0), "max_cost", accumulated
        return Decimal(0), "insufficient_balance", accumulated
    return k, None, new_acc
