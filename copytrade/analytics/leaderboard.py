"""Read the leaderboard and leader metrics back out of the warehouse (DuckDB or PostgreSQL)."""

from __future__ import annotations

from dataclasses import dataclass

from copytrade.analytics.warehouse import Warehouse

PERIODS = ("7d", "30d", "90d", "all")
# R-MET-4: default Sharpe descending; MDD sorts ascending (a smaller drawdown ranks higher).
SORTS = {
    "sharpe": "sharpe_rank",
    "pnl": "pnl_usd desc nulls last, portfolio_id",
    "roi": "roi_pct desc nulls last, portfolio_id",
    "mdd": "mdd_pct asc nulls last, portfolio_id",
    "copiers": "copiers desc, portfolio_id",
}
COLUMNS = (
    "sharpe_rank",
    "portfolio_id",
    "nickname",
    "visibility",
    "sharpe",
    "pnl_usd",
    "roi_pct",
    "mdd_pct",
    "win_rate",
    "copiers",
    "follower_cap",
    "is_full",
    "aum_usd",
    "history_days",
    "marks_complete",
    "unmarked_days",
    "metric_date",
)


@dataclass(frozen=True)
class Listing:
    values: dict

    def __getitem__(self, key):
        return self.values[key]


def top(
    warehouse: Warehouse, period: str = "90d", sort: str = "sharpe", limit: int = 20
) -> list[dict]:
    """Return the leaderboard's top ``limit`` listings of ``period`` in ``sort`` order (R-MET-4)."""
    if period not in PERIODS:
        raise ValueError(f"period {period!r} is not one of {', '.join(PERIODS)} (R-MET-1)")
    if sort not in SORTS:
        raise ValueError(f"sort {sort!r} is not one of {', '.join(SORTS)} (R-MET-4)")
    if limit < 1:
        raise ValueError(f"limit {limit} must be at least 1")
    sql = (
        f"select {', '.join(COLUMNS)} from leaderboard where period = '{period}' "
        f"order by {SORTS[sort]} limit {int(limit)}"
    )
    return query(warehouse, sql)


def copy_quality_by_leader(warehouse: Warehouse, period: str = "all") -> list[dict]:
    """Return the per-leader rows of the ``copy_quality`` mart for ``period`` (R-X-1)."""
    if period not in PERIODS:
        raise ValueError(f"period {period!r} is not one of {', '.join(PERIODS)} (R-MET-1)")
    sql = (
        "select * exclude (_batch_id, copy_quality_id, copy_id) from copy_quality "
        f"where scope = 'leader' and period = '{period}' order by portfolio_id"
    )
    if warehouse.kind != "duckdb":
        sql = (
            "select * from copy_quality "
            f"where scope = 'leader' and period = '{period}' order by portfolio_id"
        )
    return query(warehouse, sql)


class NoWarehouse(FileNotFoundError):
    """The warehouse (or its leaderboard) has not been built yet."""


class WarehouseUnavailable(ConnectionError):
    """The warehouse cannot be reached (PostgreSQL down, DuckDB file locked)."""


def query(warehouse: Warehouse, sql: str) -> list[dict]:
    """Run a read-only query on the warehouse; ``NoWarehouse`` when it has not been built."""
    if warehouse.kind == "duckdb":
        import duckdb

        if warehouse.path is None or not warehouse.path.exists():
            raise NoWarehouse(
                f"no warehouse at {warehouse.path}: run `copytrade metrics build` first"
            )
        try:
            con = duckdb.connect(str(warehouse.path), read_only=True)
        except duckdb.IOException as exc:
            raise WarehouseUnavailable(
                f"warehouse {warehouse.path} cannot be opened: {str(exc).splitlines()[0]}"
            ) from None
        try:
            try:
                result = con.execute(sql)
            except duckdb.CatalogException as exc:
                raise NoWarehouse(
                    f"the warehouse at {warehouse.path} has no complete build "
                    f"({str(exc).splitlines()[0]}): run `copytrade metrics build`"
                ) from None
            names = [d[0] for d in result.description]
            return [dict(zip(names, row, strict=True)) for row in result.fetchall()]
        finally:
            con.close()
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from copytrade.db import make_engine

    engine = make_engine(warehouse.pg_url)
    try:
        with engine.connect() as conn:
            conn.execute(text(f'set search_path to "{warehouse.schema}"'))
            return [dict(r._mapping) for r in conn.execute(text(sql))]
    except ProgrammingError as exc:
        raise NoWarehouse(
            f"schema {warehouse.schema!r} has no complete build "
            f"({str(exc.orig).splitlines()[0]}): run `copytrade metrics build`"
        ) from None
    except OperationalError as exc:
        raise WarehouseUnavailable(
            f"warehouse database unreachable: {str(exc.orig).splitlines()[0]}"
        ) from None
    finally:
        engine.dispose()
