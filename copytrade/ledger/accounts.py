"""Account addresses: readable, segmented, and the policy that follows from their first segment.

person:<person_id>:spot          a person's spot wallet (allocations come from it; earnings go to it)
follower:<copy_id>:cash          a copy's funds (quote asset and, for spot, base assets)
leader:<portfolio_id>:capital    the lead portfolio's own trading funds
leader:<portfolio_id>:rebates    rebates accrued since the last settlement (R-FEE-4)
platform:fees                    trading fees collected for the exchange
exchange:<venue>                 the counterparty of trades (may go negative)
external:<source>                the outside world: deposits and withdrawals (may go negative)
"""

from __future__ import annotations

from dataclasses import dataclass

NEGATIVE_ALLOWED = frozenset({"exchange", "external"})
KNOWN_KINDS = frozenset({"person", "follower", "leader", "platform"}) | NEGATIVE_ALLOWED
# Accounts every writer posts to (each fill's counterparty and fee): each stream other than 0
# keeps its own part of their balance (``ledger_balance_stripes``), so writers on different
# streams never wait on one balance row. A striped account that may not go negative (platform:)
# may not go negative in any one stream's part either: a stream spends only what it collected.
STRIPED_KINDS = NEGATIVE_ALLOWED | {"platform"}


@dataclass(frozen=True, slots=True)
class AccountPolicy:
    kind: str
    allow_negative: bool
    striped: bool


def account_policy(address: str) -> AccountPolicy:
    """Return the kind and negative-balance policy of ``address``; refuse unknown shapes."""
    kind, _, rest = address.partition(":")
    if kind not in KNOWN_KINDS or not rest or any(not part for part in rest.split(":")):
        raise ValueError(
            f"ledger address {address!r} is not of the form <kind>:<id>[:<purpose>] "
            f"with kind in {sorted(KNOWN_KINDS)}"
        )
    return AccountPolicy(
        kind=kind, allow_negative=kind in NEGATIVE_ALLOWED, striped=kind in STRIPED_KINDS
    )


def person_spot(person_id: int) -> str:
    return f"person:{person_id}:spot"


def follower_cash(copy_id: int) -> str:
    return f"follower:{copy_id}:cash"


def leader_capital(portfolio_id: int) -> str:
    return f"leader:{portfolio_id}:capital"


def leader_rebates(portfolio_id: int) -> str:
    return f"leader:{portfolio_id}:rebates"


PLATFORM_FEES = "platform:fees"


def exchange(venue: str = "binance") -> str:
    return f"exchange:{venue}"


def external(source: str = "deposits") -> str:
    return f"external:{source}"
