"""A synthetic ledger for tests and the metrics benchmark: leaders, copies, fills, flows, prices.

Deterministic for a seed. Leaders trade round trips (open, then close the whole position later)
on a few symbols each, so the exchange's realised PnL of a close is exactly ``qty × (close −
open)``; positions stay open across days and are marked at the day's close. Some leaders deposit
and withdraw mid-period, some start late (short histories), some are taken offline or are full.
A share of leaders has copies whose follower fills mirror the leader's with slippage and delay,
and whose intents are sometimes skipped with a reason.

``SyntheticLedger.write(engine, until=day)`` writes everything that happened before ``until``;
``write(engine, since=day)`` writes the rest, which is how the benchmark adds "one more day".
Rows go in with a few bulk statements per table (integer units, no ORM), fast enough for 10
million fills on SQLite.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import numpy as np
import pandas as pd
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from copytrade.domain.money import from_units
from copytrade.ledger import Ledger, Leg, TransferSpec
from copytrade.ledger.accounts import external, follower_cash, leader_capital, person_spot

UNITS = 100_000_000
DAY_S = 86_400
SKIP_REASONS = ("below_min_notional", "insufficient_balance", "slippage_limit")


@dataclass(frozen=True)
class SyntheticConfig:
    leaders: int = 20
    days: int = 30
    fills: int = 4_000  # leader fills in total (two per round trip)
    start: date = date(2024, 1, 1)
    symbols: int = 8
    copy_share: float = 0.3  # share of leaders that have copies
    copies_per_leader: int = 2
    flow_share: float = 0.3  # share of leaders with a mid-period deposit and withdrawal
    late_share: float = 0.1  # share of leaders that start late (some on the last day)
    offline_share: float = 0.05
    full_share: float = 0.05
    seed: int = 7


@dataclass
class SyntheticLedger:
    """Everything the generator decided, as data frames (amounts in integer 1e-8 units)."""

    config: SyntheticConfig
    portfolios: pd.DataFrame
    copies: pd.DataFrame
    flows: pd.DataFrame  # address, person_id, amount, at, code
    leader_fills: pd.DataFrame
    intents: pd.DataFrame
    follower_fills: pd.DataFrame
    bars: pd.DataFrame

    @property
    def origin(self) -> datetime:
        return datetime(
            self.config.start.year, self.config.start.month, self.config.start.day, tzinfo=UTC
        )

    def day_start(self, day: int) -> datetime:
        return self.origin + timedelta(days=day)

    def write(
        self, engine: Engine, *, until: int | None = None, since: int | None = None
    ) -> dict[str, int]:
        """Write the rows of days ``[since, until)`` (default: all); dimensions on the first write."""
        lo = self.day_start(since or 0) if since else None
        hi = self.day_start(until) if until is not None else None

        def window(frame: pd.DataFrame, column: str) -> pd.DataFrame:
            mask = np.ones(len(frame), dtype=bool)
            if lo is not None:
                mask &= (frame[column] >= lo).to_numpy()
            if hi is not None:
                mask &= (frame[column] < hi).to_numpy()
            return frame[mask]

        counts: dict[str, int] = {}
        with engine.begin() as conn:
            if since is None:
                counts["persons"] = _insert(conn, "persons", self._persons())
                counts["lead_portfolios"] = _insert(conn, "lead_portfolios", self._portfolio_rows())
                counts["copies"] = _insert(conn, "copies", self._copy_rows())
            bars = self.bars
            if lo is not None:
                bars = bars[bars["price_date"] >= lo.date()]
            if hi is not None:
                bars = bars[bars["price_date"] < hi.date()]
            counts["mark_prices"] = _insert(conn, "mark_prices", bars.drop(columns="price_date"))
            fills = window(self.leader_fills, "traded_at")
            counts["leader_fills"] = _insert(conn, "leader_fills", fills)
            intents = window(self.intents, "created_at")
            counts["follower_order_intents"] = _insert(conn, "follower_order_intents", intents)
            filled = intents[intents["outcome"] == "filled"]
            orders = pd.DataFrame(
                {
                    "id": filled["id"],
                    "intent_id": filled["id"],
                    "copy_id": filled["copy_id"],
                    "client_order_id": filled["client_order_id"],
                    "exchange_status": "FILLED",
                    "filled_quantity": filled["quantity"],
                    "created_at": filled["created_at"],
                    "updated_at": filled["acked_at"],
                }
            )
            counts["follower_orders"] = _insert(conn, "follower_orders", orders)
            counts["follower_fills"] = _insert(
                conn,
                "follower_fills",
                self.follower_fills[self.follower_fills["order_id"].isin(filled["id"])],
            )
        flows = window(self.flows, "at")
        with Session(engine) as session, session.begin():
            Ledger(session).post_many(
                [
                    TransferSpec(
                        key=f"synthetic:{row.key}",
                        code=row.code,
                        legs=(
                            Leg(row.source, "USDT", -from_units(row.amount)),
                            Leg(row.address, "USDT", from_units(row.amount)),
                        ),
                        at=row.at.to_pydatetime(),
                    )
                    for row in flows.itertuples()
                ]
            )
        counts["ledger_transfers"] = len(flows)
        return counts

    def _persons(self) -> pd.DataFrame:
        n = len(self.portfolios) + len(self.copies)
        return pd.DataFrame(
            {
                "id": np.arange(1, n + 1),
                "handle": [f"p{i}" for i in range(1, n + 1)],
                "display_name": "",
                "created_at": self.origin - timedelta(days=1),
            }
        )

    def _portfolio_rows(self) -> pd.DataFrame:
        p = self.portfolios
        return pd.DataFrame(
            {
                "id": p["portfolio_id"],
                "leader_person_id": p["portfolio_id"],
                "mode": "futures",
                "visibility": "public",
                "nickname": p["nickname"],
                "description": "",
                "profit_share_ratio": UNITS // 10,  # 0.10
                "capital": p["capital"],
                "capital_asset": "USDT",
                "status": "active",
                "follower_cap": p["follower_cap"],
                "is_listed": p["is_listed"],
                "offline_reason": np.where(
                    p["is_listed"], None, "imitates an advanced leader (R-LEAD-9)"
                ),
                "agreement_accepted_at": p["created_at"],
                "created_at": p["created_at"],
            }
        )

    def _copy_rows(self) -> pd.DataFrame:
        c = self.copies
        return pd.DataFrame(
            {
                "id": c["copy_id"],
                "portfolio_id": c["portfolio_id"],
                "follower_person_id": c["person_id"],
                "status": np.where(c["stopped_at"].isna(), "active", "stopped"),
                "allocation": c["allocation"],
                "sizing_mode": "fixed_ratio",
                "below_min_policy": "skip",
                "leverage": 1,
                "close_only": False,
                "started_at": c["started_at"],
                "stopped_at": c["stopped_at"],
            }
        )


def _insert(conn, table: str, frame: pd.DataFrame, chunk: int = 200_000) -> int:
    """Insert a frame with the driver's executemany (integer units, UTC timestamps), in chunks."""
    if frame.empty:
        return 0
    sqlite = conn.dialect.name == "sqlite"
    columns = list(frame.columns)
    marks = ", ".join("?" if sqlite else "%s" for _ in columns)
    sql = f"insert into {table} ({', '.join(columns)}) values ({marks})"
    driver = conn.connection.driver_connection
    cursor = driver.cursor()
    try:
        for i in range(0, len(frame), chunk):
            part = frame.iloc[i : i + chunk]
            converted = [_column_values(part[name], name, sqlite) for name in columns]
            cursor.executemany(sql, list(zip(*converted, strict=True)))
    finally:
        cursor.close()
    if not sqlite and "id" in columns:
        # Explicit ids leave the sequence behind; move it so later ORM inserts do not collide.
        conn.execute(
            text(
                f"select setval(pg_get_serial_sequence('{table}', 'id'), (select max(id) from {table}))"
            )
        )
    return len(frame)


def _column_values(series: pd.Series, name: str, sqlite: bool) -> list:
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        if sqlite:
            text_values = series.dt.tz_convert("UTC").dt.strftime("%Y-%m-%d %H:%M:%S.%f")
            return [None if pd.isna(v) else v for v in text_values]
        return [None if pd.isna(v) else v.to_pydatetime() for v in series]
    if series.dtype == bool:
        return [int(v) if sqlite else bool(v) for v in series]
    if name == "price_date" and sqlite:
        return [d.isoformat() for d in series]
    if series.dtype.kind in "iu":
        return series.tolist()
    return [
        None if _isnull(v) else (int(v) if isinstance(v, np.integer) else v)
        for v in series.tolist()
    ]


def _isnull(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT


def generate(config: SyntheticConfig) -> SyntheticLedger:
    """Decide a whole synthetic history from ``config`` (no I/O)."""
    rng = np.random.default_rng(config.seed)
    n, days = config.leaders, config.days
    origin = pd.Timestamp(config.start, tz="UTC")

    # Prices: an hourly geometric random walk per symbol, daily volatility about 4 %.
    hours = days * 24 + 24
    start_prices = rng.uniform(1, 500, config.symbols)
    steps = rng.normal(0.0, 0.04 / np.sqrt(24), (config.symbols, hours))
    paths = start_prices[:, None] * np.exp(np.cumsum(steps, axis=1))
    symbols = np.array([f"SYN{i:02d}USDT" for i in range(config.symbols)])

    # Leaders.
    late = rng.random(n) < config.late_share
    start_day = np.where(late, rng.integers(0, days, n), 0)
    if late.any():
        start_day[np.flatnonzero(late)[0]] = days - 1  # one leader with a single day of history
    capital_usd = rng.integers(1_000, 200_000, n)
    portfolios = pd.DataFrame(
        {
            "portfolio_id": np.arange(1, n + 1),
            "nickname": [f"leader-{i}" for i in range(1, n + 1)],
            "capital": capital_usd.astype(np.int64) * UNITS,
            "start_day": start_day,
            "created_at": origin + pd.to_timedelta(start_day, unit="D"),
            "is_listed": rng.random(n) >= config.offline_share,
            "follower_cap": np.where(
                rng.random(n) < config.full_share, config.copies_per_leader, 300
            ),
        }
    )

    # Round trips: two fills each, sequential per (leader, symbol slot).
    trips = max(config.fills // 2, 1)
    activity = rng.lognormal(0, 0.5, n) * (days - start_day)
    per_leader = rng.multinomial(trips, activity / activity.sum())
    leader_of_trip = np.repeat(np.arange(n), per_leader)
    slots = rng.integers(1, 4, n)  # symbols per leader
    slot = (rng.random(len(leader_of_trip)) * slots[leader_of_trip]).astype(np.int64)
    # three distinct symbols per leader, so round trips on one symbol never overlap
    leader_symbols = (
        np.argsort(rng.random((n, max(config.symbols, 3))), axis=1)[:, :3] % config.symbols
    )
    group = leader_of_trip * 3 + slot
    # two times per trip, sorted within the group, paired in order
    g2 = np.repeat(group, 2)
    lo_s = start_day[g2 // 3] * DAY_S
    t = lo_s + rng.random(len(g2)) * (days * DAY_S - lo_s)
    order = np.lexsort((t, g2))
    g_sorted, t_sorted = g2[order], t[order]
    opens, closes = t_sorted[0::2], t_sorted[1::2]
    trip_group = g_sorted[0::2]
    trip_leader = trip_group // 3
    trip_symbol = leader_symbols[trip_leader, trip_group % 3]
    direction = np.where(rng.random(len(trip_group)) < 0.7, 1, -1)  # 1 long, -1 short

    def price_at(sym, secs):
        hour = np.minimum((secs // 3600).astype(np.int64), hours - 1)
        noise = np.exp(rng.normal(0, 0.002, len(secs)))
        return np.round(paths[sym, hour] * noise * UNITS).astype(np.int64)

    p_open, p_close = price_at(trip_symbol, opens), price_at(trip_symbol, closes)
    notional = capital_usd[trip_leader] * rng.uniform(0.02, 0.2, len(trip_group))
    qty = np.floor(notional / (p_open / UNITS) * 1e4).astype(np.int64) * 10_000  # step 1e-4
    qty = np.maximum(qty, 10_000)
    realised = np.rint(
        direction * qty.astype(float) * (p_close - p_open).astype(float) / UNITS
    ).astype(np.int64)
    fee_open = np.floor(qty.astype(float) * p_open / UNITS * 0.0004).astype(np.int64)
    fee_close = np.floor(qty.astype(float) * p_close / UNITS * 0.0004).astype(np.int64)

    m = len(trip_group)
    fills = pd.DataFrame(
        {
            "trip": np.concatenate([np.arange(m), np.arange(m)]),
            "portfolio_id": np.concatenate([trip_leader, trip_leader]) + 1,
            "symbol": symbols[np.concatenate([trip_symbol, trip_symbol])],
            "side": np.where(np.concatenate([direction, -direction]) > 0, "buy", "sell"),
            "position_side": np.where(np.concatenate([direction, direction]) > 0, "long", "short"),
            "price": np.concatenate([p_open, p_close]),
            "quantity": np.concatenate([qty, qty]),
            "fee": np.concatenate([fee_open, fee_close]),
            "realised_pnl": np.concatenate([np.zeros(m, np.int64), realised]),
            "secs": np.concatenate([opens, closes]),
            "is_opening": np.concatenate([np.ones(m, bool), np.zeros(m, bool)]),
        }
    )
    fills = fills.sort_values(
        ["secs", "trip", "is_opening"], ascending=[True, True, False], kind="stable"
    )
    fills["id"] = np.arange(1, len(fills) + 1)
    fills["traded_at"] = origin + pd.to_timedelta(
        np.round(fills["secs"] * 1e6).astype(np.int64), unit="us"
    )
    fills = fills.reset_index(drop=True)
    leader_fills = pd.DataFrame(
        {
            "id": fills["id"],
            "portfolio_id": fills["portfolio_id"],
            "exchange_trade_id": "syn-" + fills["id"].astype(str),
            "symbol": fills["symbol"],
            "side": fills["side"],
            "position_side": fills["position_side"],
            "price": fills["price"],
            "quantity": fills["quantity"],
            "fee": fills["fee"],
            "fee_asset": "USDT",
            "realised_pnl": fills["realised_pnl"],
            "traded_at": fills["traded_at"],
            "is_opening": fills["is_opening"],
            "position_before": 0,
            "source": "stream",
            "received_at": fills["traded_at"],
        }
    )

    # Flows: the initial capital, and a deposit then a withdrawal for some leaders.
    flow_rows = []
    for row in portfolios.itertuples():
        person = int(row.portfolio_id)
        start = row.created_at
        flow_rows.append(
            (
                f"cap:{person}",
                external(),
                leader_capital(person),
                person,
                row.capital,
                start,
                "deposit",
            )
        )
        if rng.random() < config.flow_share and days - row.start_day > 4:
            d1 = int(rng.integers(row.start_day + 1, days - 2))
            d2 = int(rng.integers(d1 + 1, days))
            add = int(row.capital // 2 // UNITS * UNITS)
            take = int(row.capital // 4 // UNITS * UNITS)
            at1 = origin + pd.Timedelta(days=d1, hours=int(rng.integers(0, 24)))
            at2 = origin + pd.Timedelta(days=d2, hours=int(rng.integers(0, 24)))
            flow_rows.append(
                (f"dep:{person}", external(), leader_capital(person), person, add, at1, "deposit")
            )
            flow_rows.append(
                (
                    f"wd:{person}",
                    leader_capital(person),
                    external("withdrawals"),
                    person,
                    take,
                    at2,
                    "withdrawal",
                )
            )

    # Copies.
    copy_rows = []
    with_copies = np.flatnonzero(rng.random(n) < config.copy_share)
    copy_id = 0
    for leader in with_copies:
        for _ in range(config.copies_per_leader):
            copy_id += 1
            person = n + copy_id
            sd = int(rng.integers(start_day[leader], days))
            started = origin + pd.Timedelta(days=sd, hours=int(rng.integers(0, 12)))
            stopped = None
            if rng.random() < 0.25 and sd + 2 < days:
                stopped = origin + pd.Timedelta(days=int(rng.integers(sd + 1, days)), hours=12)
            allocation = int(rng.integers(500, 20_000)) * UNITS
            copy_rows.append((copy_id, leader + 1, person, allocation, started, stopped))
            flow_rows.append(
                (
                    f"fund:{copy_id}",
                    external(),
                    person_spot(person),
                    person,
                    allocation,
                    started - pd.Timedelta(minutes=1),
                    "deposit",
                )
            )
            flow_rows.append(
                (
                    f"alloc:{copy_id}",
                    person_spot(person),
                    follower_cash(copy_id),
                    person,
                    allocation,
                    started,
                    "copy_allocation",
                )
            )
    copies = pd.DataFrame(
        copy_rows,
        columns=["copy_id", "portfolio_id", "person_id", "allocation", "started_at", "stopped_at"],
    )
    copies["stopped_at"] = pd.to_datetime(copies["stopped_at"], utc=True)
    flows = pd.DataFrame(
        flow_rows, columns=["key", "source", "address", "person_id", "amount", "at", "code"]
    )
    flows["at"] = pd.to_datetime(flows["at"], utc=True)
    flows = flows.sort_values("at", kind="stable").reset_index(drop=True)

    intents, follower_fills = _copied(rng, fills, portfolios, copies)

    # Daily marks: close of the day's last hour, recorded at the day's last minute (23:59 UTC),
    # quote volume around 50 million USD; price_date is kept for the tests' reference loop.
    bar_rows = []
    bar_id = 0
    for s in range(config.symbols):
        for d in range(days + 1):
            bar_id += 1
            close = int(round(paths[s, d * 24 + 23] * UNITS))
            volume = int(rng.uniform(2e7, 8e7)) * UNITS
            day = origin + pd.Timedelta(days=d)
            bar_rows.append(
                (
                    bar_id,
                    symbols[s],
                    "usdm",
                    day + pd.Timedelta(hours=23, minutes=59),
                    day.date(),
                    close,
                    volume,
                    "synthetic",
                    origin,
                )
            )
    bars = pd.DataFrame(
        bar_rows,
        columns=[
            "id",
            "symbol",
            "market",
            "marked_at",
            "price_date",
            "price",
            "quote_volume",
            "source",
            "recorded_at",
        ],
    )
    return SyntheticLedger(
        config, portfolios, copies, flows, leader_fills, intents, follower_fills, bars
    )


def _copied(rng, fills: pd.DataFrame, portfolios: pd.DataFrame, copies: pd.DataFrame):
    """Mirror each leader fill into every copy active at the time (R-COPY-1/7/8)."""
    if copies.empty:
        return _empty_intents(), _empty_follower_fills()
    f = fills[
        [
            "id",
            "trip",
            "portfolio_id",
            "symbol",
            "side",
            "price",
            "quantity",
            "traded_at",
            "is_opening",
        ]
    ]
    pairs = f.merge(
        copies[["copy_id", "portfolio_id", "allocation", "started_at", "stopped_at"]],
        on="portfolio_id",
    )
    active = (pairs["traded_at"] >= pairs["started_at"]) & (
        pairs["stopped_at"].isna() | (pairs["traded_at"] < pairs["stopped_at"])
    )
    pairs = pairs[active].copy()
    # a close is copied only when its open was; an open may be skipped with a reason
    opens = pairs[pairs["is_opening"]]
    skip_open = rng.random(len(opens)) < 0.03
    copied_trips = set(zip(opens["trip"][~skip_open], opens["copy_id"][~skip_open], strict=True))
    key = list(zip(pairs["trip"], pairs["copy_id"], strict=True))
    pairs["copied"] = [k in copied_trips for k in key]
    pairs["reason"] = None
    open_idx = pairs.index[pairs["is_opening"]]
    reasons = np.array(SKIP_REASONS)[rng.integers(0, len(SKIP_REASONS), len(open_idx))]
    pairs.loc[open_idx, "reason"] = np.where(pairs.loc[open_idx, "copied"], None, reasons)
    close_missing = (~pairs["is_opening"]) & (~pairs["copied"])
    pairs.loc[close_missing, "reason"] = "no_copied_position"
    capital = portfolios.set_index("portfolio_id")["capital"]
    ratio = pairs["allocation"].to_numpy() / capital.loc[pairs["portfolio_id"]].to_numpy()
    qty = np.floor(pairs["quantity"].to_numpy() * ratio / 10_000).astype(np.int64) * 10_000
    # opens and closes of one trip use the same rounded quantity
    pairs["qty"] = np.where(pairs["copied"], np.maximum(qty, 10_000), 0)
    pairs = pairs.sort_values(["traded_at", "id", "copy_id"], kind="stable").reset_index(drop=True)
    pairs["intent_id"] = np.arange(1, len(pairs) + 1)
    delay_ms = np.rint(rng.lognormal(np.log(150), 0.6, len(pairs))).astype(np.int64)
    bps = np.abs(rng.normal(2.0, 4.0, len(pairs)))
    sign = np.where(pairs["side"] == "buy", 1.0, -1.0)
    fprice = np.round(pairs["price"].to_numpy() * (1 + sign * bps / 1e4)).astype(np.int64)
    acked = pairs["traded_at"] + pd.to_timedelta(delay_ms, unit="ms")
    outcome = np.where(pairs["copied"], "filled", "skipped")
    intents = pd.DataFrame(
        {
            "id": pairs["intent_id"],
            "leader_fill_id": pairs["id"],
            "copy_id": pairs["copy_id"],
            "leg": 0,
            "kind": "copy",
            "client_order_id": "c" + pairs["id"].astype(str) + "-" + pairs["copy_id"].astype(str),
            "symbol": pairs["symbol"],
            "side": pairs["side"],
            "quantity": pairs["qty"],
            "computed_quantity": pairs["qty"],
            "reduce_only": ~pairs["is_opening"],
            "leader_price": pairs["price"],
            "status": "done",
            "outcome": outcome,
            "reason": pairs["reason"],
            "created_at": pairs["traded_at"],
            "sent_at": pairs["traded_at"],
            "acked_at": acked,
        }
    )
    filled = pairs[pairs["copied"]].copy()
    fp = pd.Series(fprice, index=pairs.index)[filled.index]
    filled["fprice"] = fp
    # realised PnL of a copied close: the follower's own open and close prices
    open_price = filled[filled["is_opening"]].set_index(["trip", "copy_id"])["fprice"]
    closes = ~filled["is_opening"]
    keys = pd.MultiIndex.from_arrays([filled.loc[closes, "trip"], filled.loc[closes, "copy_id"]])
    po = open_price.reindex(keys).to_numpy()
    direction = np.where(filled.loc[closes, "side"] == "sell", 1, -1)
    realised = np.zeros(len(filled), np.int64)
    realised[closes.to_numpy()] = np.rint(
        direction
        * filled.loc[closes, "qty"].to_numpy().astype(float)
        * (filled.loc[closes, "fprice"].to_numpy() - po)
        / UNITS
    ).astype(np.int64)
    sign_f = np.where(filled["side"] == "buy", 1, -1)
    slip = np.rint(
        (filled["fprice"] - filled["price"]).to_numpy()
        * sign_f
        / filled["price"].to_numpy()
        * 1e4
        * UNITS
    ).astype(np.int64)
    follower_fills = pd.DataFrame(
        {
            "id": filled["intent_id"],
            "order_id": filled["intent_id"],
            "copy_id": filled["copy_id"],
            "leader_fill_id": filled["id"],
            "exchange_trade_id": "f" + filled["intent_id"].astype(str),
            "symbol": filled["symbol"],
            "side": filled["side"],
            "price": filled["fprice"],
            "quantity": filled["qty"],
            "fee": np.floor(
                filled["qty"].to_numpy().astype(float)
                * filled["fprice"].to_numpy()
                / UNITS
                * 0.0004
            ).astype(np.int64),
            "fee_asset": "USDT",
            "realised_pnl": realised,
            "traded_at": acked[filled.index],
            "leader_price": filled["price"],
            "slippage_bps": slip,
            "rebate": 0,
            "copy_delay_ms": delay_ms[filled.index.to_numpy()],
        }
    )
    return intents, follower_fills


def _empty_intents() -> pd.DataFrame:
    return pd.DataFrame(
        columns=["id", "leader_fill_id", "copy_id", "created_at", "outcome"]
    ).astype({"created_at": "datetime64[us, UTC]"})


def _empty_follower_fills() -> pd.DataFrame:
    return pd.DataFrame(columns=["id", "order_id", "traded_at"]).astype(
        {"traded_at": "datetime64[us, UTC]"}
    )


def decimal_units(units: int) -> Decimal:
    return from_units(units)
