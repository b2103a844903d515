"""A paper exchange for the whole session (started once, on a free port) and ccxt clients on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import ccxt.async_support as ccxt
import pytest

from copytrade.config import get_settings
from copytrade.paper.client import PaperAccount
from tests.support.paper_exchange import PaperHandle, ccxt_client, run_paper_exchange

SHARED_DATA = get_settings().data_dir

if not (SHARED_DATA / "exchange" / "binance-markets.json").exists():
    pytest.skip(f"shared data not found at {SHARED_DATA}", allow_module_level=True)


@pytest.fixture(scope="session")
def paper() -> Iterator[PaperHandle]:
    with run_paper_exchange(data_dir=SHARED_DATA) as handle:
        yield handle


@pytest.fixture
def account(paper: PaperHandle) -> PaperAccount:
    """A fresh account with 10,000 USDT spot and 5,000 USDT futures."""
    return paper.admin.create_account(spot={"USDT": "10000"}, futures={"USDT": "5000"})


@pytest.fixture
async def spot(paper: PaperHandle, account: PaperAccount) -> AsyncIterator[ccxt.binance]:
    client = ccxt_client("spot", paper.base_url, account.api_key, account.api_secret)
    await client.load_markets()
    yield client
    await client.close()


@pytest.fixture
async def futures(paper: PaperHandle, account: PaperAccount) -> AsyncIterator[ccxt.binanceusdm]:
    client = ccxt_client("futures", paper.base_url, account.api_key, account.api_secret)
    await client.load_markets()
    yield client
    await client.close()
