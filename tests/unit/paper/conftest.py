"""The paper exchange's engine on the real shared data, without HTTP (frozen simulated clock)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from copytrade.config import get_settings
from copytrade.paper.catalog import Catalog, load_catalog
from copytrade.paper.exchange import PaperExchange
from copytrade.paper.market_data import MarketData, load_market_data
from copytrade.paper.prices import SimClock, parse_time_ms

DATA_DIR = get_settings().data_dir
START = "2025-01-27T00:00:00Z"

if not (DATA_DIR / "exchange" / "binance-markets.json").exists():
    pytest.skip(f"shared data not found at {DATA_DIR}", allow_module_level=True)


@pytest.fixture(scope="session")
def catalog_and_data() -> tuple[Catalog, MarketData]:
    catalog = load_catalog(DATA_DIR)
    return catalog, load_market_data(DATA_DIR, catalog)


@pytest.fixture
def make_exchange(catalog_and_data) -> Callable[..., PaperExchange]:
    """Return a factory of fresh exchanges whose clock stands still at ``start``."""
    catalog, data = catalog_and_data

    def make(start: str = START) -> PaperExchange:
        return PaperExchange(catalog, data, SimClock(parse_time_ms(start), speed=0.0))

    return make


@pytest.fixture
def exchange(make_exchange) -> PaperExchange:
    return make_exchange()
