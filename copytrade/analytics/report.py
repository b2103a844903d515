"""A leader's report as a picture: equity curve, drawdown and monthly returns over 7/30/90 days
and all time, with the R-MET figures beside them (matplotlib; PNG, or HTML with the PNG inside).

Everything is read from the warehouse (``fct_leader_daily_returns``, ``leader_metrics`` at the
latest metric date, ``dim_lead_portfolios``); nothing is recomputed except what a chart shows:
each period's drawdown is the NAV index's fall from its running peak, the peak including the NAV
just before the window (as ``mdd_pct``), and a month's return is Π(1 + r) − 1 of its days.
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from copytrade.analytics.leaderboard import PERIODS, query
from copytrade.analytics.warehouse import Warehouse

PERIOD_DAYS = {"7d": 7, "30d": 30, "90d": 90, "all": None}
FIGURES = (  # (column, label, format)
    ("pnl_usd", "PnL USD", "{:,.2f}"),
    ("roi_pct", "ROI %", "{:,.2f}"),
    ("twr_pct", "TWR %", "{:,.2f}"),
    ("sharpe", "Sharpe", "{:,.2f}"),
    ("mdd_pct", "MDD %", "{:,.2f}"),
    ("win_rate", "win rate", "{:.1%}"),
    ("copiers", "copiers", "{:,.0f}"),
    ("aum_usd", "AUM USD", "{:,.0f}"),
    ("marks_complete", "marks complete", "{}"),
)


@dataclass(frozen=True)
class LeaderReport:
    portfolio_id: int
    nickname: str
    metric_date: date
    days: list[date]
    equity: list[float]
    returns: list[float | None]
    metrics: dict[str, dict]  # period → leader_metrics row


def load(warehouse: Warehouse, portfolio_id: int) -> LeaderReport:
    """Read one portfolio's daily series and its metrics at the latest metric date."""
    names = query(
        warehouse,
        f"select nickname from dim_lead_portfolios where portfolio_id = {int(portfolio_id)}",
    )
    if not names:
        raise ValueError(f"portfolio {portfolio_id} is not in the warehouse (R-IN-2)")
    series = query(
        warehouse,
        "select return_date, equity_usd, daily_return from fct_leader_daily_returns "
        f"where portfolio_id = {int(portfolio_id)} order by return_date",
    )
    rows = query(
        warehouse,
        "select * from leader_metrics where portfolio_id = "
        f"{int(portfolio_id)} and metric_date = (select max(metric_date) from leader_metrics "
        f"where portfolio_id = {int(portfolio_id)})",
    )
    if not series or not rows:
        raise ValueError(
            f"portfolio {portfolio_id} has no metrics yet: run `copytrade metrics build`"
        )
    return LeaderReport(
        portfolio_id=int(portfolio_id),
        nickname=names[0]["nickname"],
        metric_date=rows[0]["metric_date"],
        days=[r["return_date"] for r in series],
        equity=[float(r["equity_usd"]) for r in series],  # a chart's coordinates, not money
        returns=[None if r["daily_return"] is None else float(r["daily_return"]) for r in series],
        metrics={r["period"]: r for r in rows},
    )


def window(report: LeaderReport, period: str) -> list[int]:
    """Indices of the days in a period's window ending at the metric date."""
    days = PERIOD_DAYS[period]
    end = report.metric_date
    start = date.min if days is None else end - timedelta(days=days - 1)
    return [i for i, d in enumerate(report.days) if start <= d <= end]


def drawdowns(report: LeaderReport, indices: list[int]) -> list[float]:
    """The NAV index's fall from its running peak in the window (peak includes the NAV before it)."""
    nav = peak = 1.0
    out = []
    for i in indices:
        nav *= 1 + (report.returns[i] or 0.0)
        peak = max(peak, nav)
        out.append(nav / peak - 1)
    return out


def monthly_returns(report: LeaderReport) -> list[tuple[str, float]]:
    months: dict[str, float] = {}
    for day, r in zip(report.days, report.returns, strict=True):
        key = f"{day:%Y-%m}"
        months[key] = months.get(key, 1.0) * (1 + (r or 0.0))
    return [(k, v - 1) for k, v in months.items()]


def figure_rows(report: LeaderReport) -> list[list[str]]:
    """The R-MET figures as rows: one per figure, one column per period."""
    rows = []
    for column, label, fmt in FIGURES:
        row = [label]
        for period in PERIODS:
            value = report.metrics.get(period, {}).get(column)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                row.append("—")
            else:
                row.append(fmt.format(float(value) if fmt != "{}" else value))
        rows.append(row)
    return rows


def render_png(report: LeaderReport) -> bytes:
    """Draw the report: per period its equity and drawdown; monthly returns; the figures table."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(16, 11), layout="constrained")
    grid = fig.add_gridspec(4, 4, height_ratios=[3, 2, 2.4, 2.4])
    fig.suptitle(
        f"{report.nickname} (portfolio {report.portfolio_id}) — metric date {report.metric_date}",
        fontsize=14,
    )
    for column, period in enumerate(PERIODS):
        indices = window(report, period)
        days = [report.days[i] for i in indices]
        equity_ax = fig.add_subplot(grid[0, column])
        equity_ax.plot(days, [report.equity[i] for i in indices], color="tab:blue")
        equity_ax.set_title(f"{period}: equity (USDT)")
        equity_ax.tick_params(axis="x", labelrotation=45, labelsize=7)
        drawdown_ax = fig.add_subplot(grid[1, column], sharex=equity_ax)
        drawdown_ax.fill_between(
            days, [100 * d for d in drawdowns(report, indices)], 0, color="tab:red", alpha=0.4
        )
        drawdown_ax.set_title(f"{period}: drawdown (%)")
        drawdown_ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    months = monthly_returns(report)
    month_ax = fig.add_subplot(grid[2, :])
    month_ax.bar(
        [m for m, _ in months],
        [100 * r for _, r in months],
        color=["tab:green" if r >= 0 else "tab:red" for _, r in months],
    )
    month_ax.axhline(0, color="black", linewidth=0.8)
    month_ax.set_title("monthly returns (%, time-weighted)")
    table_ax = fig.add_subplot(grid[3, :])
    table_ax.axis("off")
    table = table_ax.table(
        cellText=figure_rows(report),
        colLabels=["R-MET", *PERIODS],
        loc="center",
        cellLoc="right",
    )
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return buffer.getvalue()


def render_html(report: LeaderReport, png: bytes | None = None) -> str:
    """A self-contained page (no scripts, no network): the chart as an embedded PNG and the
    figures as an HTML table an analyst can copy."""
    png = png or render_png(report)
    image = base64.b64encode(png).decode()
    header = "".join(f"<th>{html.escape(p)}</th>" for p in PERIODS)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
        for row in figure_rows(report)
    )
    title = html.escape(f"{report.nickname} (portfolio {report.portfolio_id})")
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{title}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}"
        "td:first-child{text-align:left}</style></head><body>"
        f"<h1>{title}</h1><p>Metric date {report.metric_date} (UTC days; docs/metrics.md).</p>"
        f"<table><thead><tr><th>R-MET</th>{header}</tr></thead><tbody>{body}</tbody></table>"
        f"<p><img alt='equity, drawdown and monthly returns' src='data:image/png;base64,{image}'>"
        "</p></body></html>"
    )


def write(report: LeaderReport, output: Path) -> Path:
    """Write ``output`` as .png or .html (the suffix decides)."""
    suffix = output.suffix.lower()
    if suffix not in (".png", ".html"):
        raise ValueError(f"--output {output.name!r} must end in .html or .png")
    png = render_png(report)
    output.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".png":
        output.write_bytes(png)
    else:
        output.write_text(render_html(report, png), encoding="utf-8")
    return output
