"""The leader metrics computed the straightforward way: pandas and a Python loop per leader.

This is the independent yardstick for the dbt models: tests compare the warehouse with it, and
the benchmark times it against ``dbt build`` (on a slice of leaders, extrapolated). It follows the
definitions of docs/metrics.md but is written from them directly — position by position, average
cost, day by day — rather than from cumulative sums as the SQL is. Floats are fine here: it is a
check of the SQL, not a money path.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd

PERIODS = {"7d": 7, "30d": 30, "90d": 90, "all": None}


@dataclass
class _Position:
    quantity: float = 0.0  # on its side (≥ 0 for long/short sides)
    cost: float = 0.0  # signed cost basis of the open quantity
    unpublished: bool = False


def daily_equity(
    fills: pd.DataFrame,
    flows: pd.DataFrame,
    marks: dict[str, pd.Series],
    first_day: date,
    as_of: date,
) -> pd.DataFrame:
    """Return one leader's daily equity: flows + realised − fees + unrealised at the day's mark.

    ``fills``: symbol, side, position_side, price, quantity, fee, realised_pnl (None if not
    published), is_opening, traded_at (UTC); ``flows``: at, amount; ``marks``: symbol → closes
    indexed by date (carried forward; a position without any mark is carried at cost).
    """
    fills = (
        fills.sort_values(["traded_at", "id"]) if "id" in fills else fills.sort_values("traded_at")
    )
    by_day_fills = defaultdict(list)
    for row in fills.itertuples(index=False):
        by_day_fills[row.traded_at.date()].append(row)
    flow_by_day: dict[date, float] = defaultdict(float)
    for row in flows.itertuples(index=False):
        flow_by_day[row.at.date()] += float(row.amount)
    positions: dict[tuple[str, str], _Position] = defaultdict(_Position)
    cash = realised_total = fees_total = 0.0
    rows = []
    day = first_day
    while day <= as_of:
        net_flow = flow_by_day.get(day, 0.0)
        cash += net_flow
        closing = winning = 0
        realised_day = fees_day = 0.0
        for f in by_day_fills.get(day, []):
            side = f.position_side or "net"
            pos = positions[(f.symbol, side)]
            q, p = float(f.quantity), float(f.price)
            published = f.realised_pnl is not None and not (
                isinstance(f.realised_pnl, float) and math.isnan(f.realised_pnl)
            )
            r = float(f.realised_pnl) if published else 0.0
            pos.unpublished |= not published
            fee = float(f.fee)
            realised_day += r
            fees_day += fee
            if f.is_opening is False:
                closing += 1
                winning += r > 0
            sign = -1.0 if side == "short" else 1.0
            opens = (f.side == "buy") == (sign > 0)
            if side == "net":
                signed = q if f.side == "buy" else -q
                pos.cost += signed * p + r
                pos.quantity += signed
                if pos.quantity == 0 and not pos.unpublished:
                    pos.cost = 0.0
                continue
            if opens:
                pos.quantity += q
                pos.cost += sign * q * p
                continue
            known = min(q, pos.quantity)
            if known > 0:
                # average cost leaves with the closed share of the position
                pos.cost -= pos.cost * known / pos.quantity if published else sign * known * p
                pos.quantity -= known
            if pos.quantity <= 1e-12:
                pos.quantity = 0.0
                if not pos.unpublished:
                    pos.cost = 0.0
        realised_total += realised_day
        fees_total += fees_day
        unrealised = 0.0
        for (symbol, side), pos in positions.items():
            if pos.quantity == 0:
                if pos.unpublished:
                    unrealised -= pos.cost
                continue
            series = marks.get(symbol)
            mark = None
            if series is not None:
                known_marks = series[series.index <= day]
                if len(known_marks):
                    mark = float(known_marks.iloc[-1])
            if mark is None:
                continue
            signed_qty = -pos.quantity if side == "short" else pos.quantity
            unrealised += signed_qty * mark - pos.cost
        rows.append(
            {
                "date": day,
                "net_flow": net_flow,
                "realised": realised_day,
                "fees": fees_day,
                "closing_fills": closing,
                "winning_fills": winning,
                "equity": cash + realised_total - fees_total + unrealised,
            }
        )
        day += timedelta(days=1)
    return pd.DataFrame(rows)


def daily_returns(equity: pd.DataFrame) -> pd.DataFrame:
    """Add previous equity, capital base, daily PnL and the flow-neutral daily return."""
    out = equity.copy()
    out["previous_equity"] = out["equity"].shift(1).fillna(0.0)
    out["capital_base"] = out["previous_equity"] + out["net_flow"]
    out["pnl"] = out["equity"] - out["previous_equity"] - out["net_flow"]
    out["daily_return"] = np.where(
        out["capital_base"] > 0,
        out["pnl"] / out["capital_base"].where(out["capital_base"] > 0, 1),
        np.nan,
    )
    return out


def period_metrics(
    returns: pd.DataFrame, metric_date: date, days: int | None, annualisation: int = 365
) -> dict:
    """Return the R-MET-2 figures of one leader over one period ending at ``metric_date``."""
    window = returns[returns["date"] <= metric_date]
    if days is not None:
        window = window[window["date"] > metric_date - timedelta(days=days)]
    if window.empty:
        return {}
    r = window["daily_return"]
    n = len(window)
    valid = r.dropna()
    sharpe = None
    if len(valid) >= 2 and valid.std(ddof=1) > 0:
        sharpe = valid.mean() / valid.std(ddof=1) * math.sqrt(annualisation)
    growth = (1 + r.fillna(0)).clip(lower=1e-12)
    nav = np.concatenate([[1.0], np.cumprod(growth.to_numpy())])
    peak = np.maximum.accumulate(nav)
    mdd = float(-((nav - peak) / peak).min())
    start_equity = float(window["previous_equity"].iloc[0])
    weights = (
        pd.Series([(metric_date - d).days + 1 for d in window["date"]], index=window.index)
    ) / n
    twc = start_equity + float((window["net_flow"] * weights).sum())
    pnl = float(window["pnl"].sum())
    closing = int(window["closing_fills"].sum())
    return {
        "pnl_usd": pnl,
        "roi_pct": 100 * pnl / twc if twc else None,
        "twr_pct": 100 * (nav[-1] - 1),
        "annual_return_pct": 100 * (nav[-1] ** (annualisation / n) - 1),
        "sharpe": sharpe,
        "mdd_pct": 100 * mdd,
        "win_rate": int(window["winning_fills"].sum()) / closing if closing else None,
        "history_days": int((metric_date - returns["date"].iloc[0]).days + 1),
        "time_weighted_capital_usd": twc,
    }


def leader_metrics(
    fills: pd.DataFrame,
    flows: pd.DataFrame,
    marks: dict[str, pd.Series],
    first_day: date,
    as_of: date,
) -> dict[str, dict]:
    """Return the metrics of every period for one leader at ``as_of``."""
    returns = daily_returns(daily_equity(fills, flows, marks, first_day, as_of))
    return {period: period_metrics(returns, as_of, days) for period, days in PERIODS.items()}
