"""Which real file drives which listed symbol (the decisions are in docs/paper-exchange.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

from copytrade.paper.catalog import FUTURES, SPOT, Catalog
from copytrade.paper.prices import (
    BTC_USDT_REFERENCE,
    FLAT_REFERENCE_PRICES,
    FundingSchedule,
    PricePath,
    candles_path,
    funding_schedule,
    trades_path,
)

# Spot pairs quoted in BTC/ETH are listed as they are, each on its own file.
NATIVE_SPOT_FILES = {
    "ADABTC": "spot/ADA_BTC-5m.csv",
    "ETCBTC": "spot/ETC_BTC-5m.csv",
    "ETHBTC": "spot/ETH_BTC-5m.csv",
    "LTCBTC": "spot/LTC_BTC-5m.csv",
    "NXTBTC": "spot/NXT_BTC-5m.csv",
    "TRXBTC": "spot/TRX_BTC-5m.csv",
    "XLMBTC": "spot/XLM_BTC-5m.csv",
    "XRPETH": "spot/XRP_ETH-trades.csv",
}
# USDT symbols whose path is a BTC-quoted path valued at the stated BTC/USDT reference rate.
BTC_SCALED = {"ETHUSDT": "ETHBTC", "ADAUSDT": "ADABTC", "LTCUSDT": "LTCBTC", "TRXUSDT": "TRXBTC"}
FUTURES_FILES = {
    "XRPUSDT": "futures/XRP_USDT_USDT-5m.csv",
    "1000PEPEUSDT": "futures/1000PEPEUSDT-5m-2025.csv",
    "ONDOUSDT": "futures/ONDOUSDT-5m-2025.csv",
}
MARK_FILES = {"XRPUSDT": "futures/XRP_USDT_USDT-1h-mark.csv"}
FUNDING_FILES = {"XRPUSDT": "futures/XRP_USDT_USDT-8h-funding_rate.csv"}


@dataclass(slots=True)
class MarketData:
    """Price path per (kind, symbol), mark-price paths and funding schedules of perpetuals."""

    paths: dict[tuple[str, str], PricePath]
    marks: dict[str, PricePath] = field(default_factory=dict)
    funding: dict[str, FundingSchedule] = field(default_factory=dict)

    def path(self, kind: str, symbol: str) -> PricePath:
        return self.paths[(kind, symbol)]


def load_market_data(data_dir: Path, catalog: Catalog) -> MarketData:
    """Build a path for every listed symbol from the files of ``data_dir/market``."""
    root = data_dir / "market"
    native: dict[str, PricePath] = {}
    for symbol, rel in NATIVE_SPOT_FILES.items():
        file = root / rel
        if file.exists():
            native[symbol] = trades_path(file) if "trades" in rel else candles_path(file)
    futures_native = {
        s: candles_path(root / rel) for s, rel in FUTURES_FILES.items() if (root / rel).exists()
    }

    paths: dict[tuple[str, str], PricePath] = {}
    for kind in (SPOT, FUTURES):
        for symbol, pm in catalog.of(kind).items():
            tick = pm.market.tick_size
            if kind == SPOT and symbol in native:
                path = native[symbol]
            elif kind == FUTURES and symbol in futures_native:
                path = futures_native[symbol]
            elif symbol in BTC_SCALED and BTC_SCALED[symbol] in native:
                src = native[BTC_SCALED[symbol]]
                path = src.scaled(
                    BTC_USDT_REFERENCE, tick, f"{src.source} × {BTC_USDT_REFERENCE} USDT/BTC"
                )
            elif symbol == "XRPUSDT" and "XRPUSDT" in futures_native:
                src = futures_native["XRPUSDT"]
                path = src.scaled(Decimal(1), tick, f"{src.source} (perpetual path)")
            else:
                price = FLAT_REFERENCE_PRICES.get(symbol, Decimal(1))
                path = PricePath.flat(price, f"flat reference {price}")
            pm.price_source = path.source
            paths[(kind, symbol)] = path
    marks = {s: candles_path(root / rel) for s, rel in MARK_FILES.items() if (root / rel).exists()}
    funding = {
        s: funding_schedule(root / rel) for s, rel in FUNDING_FILES.items() if (root / rel).exists()
    }
    return MarketData(paths=paths, marks=marks, funding=funding)


@lru_cache(maxsize=4)
def load_reference(data_dir: Path) -> tuple[Catalog, MarketData]:
    """Return the catalog and market data of ``data_dir``, read once per process (read-only)."""
    from copytrade.paper.catalog import load_catalog

    catalog = load_catalog(data_dir)
    return catalog, load_market_data(data_dir, catalog)
