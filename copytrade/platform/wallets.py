"""Spot wallets of people in the ledger: deposits from outside and balances (person:<id>:spot)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.orm import Session

from copytrade.domain.errors import RuleViolation
from copytrade.domain.inputs import decimal_field
from copytrade.ledger import Ledger, Leg
from copytrade.ledger.accounts import external, person_spot
from copytrade.platform.people import check_handle, get_or_create_person

ASSET = "USDT"  # the settlement asset, valued 1:1 with USD
MAX_DEPOSIT = Decimal(1_000_000_000)


@dataclass(frozen=True, slots=True)
class DepositResult:
    person_id: int
    amount: Decimal
    balance: Decimal
    created: bool  # False: the idempotency key had been used before; nothing changed


def deposit(
    session: Session, handle: str, amount: object, key: str | None = None, asset: str = ASSET
) -> DepositResult:
    """Credit ``amount`` to the person's spot wallet from external:deposits (the person is created if new).

    ``key`` makes the deposit idempotent: repeating it changes nothing; without one a fresh key is
    used, so every call deposits.
    """
    check_handle(handle)
    value = decimal_field("amount", amount, "R-IN-2")
    if value <= 0:
        raise RuleViolation(
            "amount", amount, "R-IN-2", f"deposit amount {value} must be above zero"
        )
    if value > MAX_DEPOSIT:
        raise RuleViolation(
            "amount", amount, "R-IN-2", f"deposit amount {value} is above {MAX_DEPOSIT}"
        )
    if key is not None and not (1 <= len(key.strip()) <= 120):
        raise RuleViolation(
            "key", key, "R-IN-2", "an idempotency key of 1 to 120 characters is required"
        )
    asset = asset.strip().upper()
    if not asset.isalnum() or len(asset) > 16:
        raise RuleViolation(
            "asset", asset, "R-IN-2", f"asset {asset!r} is not an asset code like USDT"
        )
    person = get_or_create_person(session, handle)
    ledger = Ledger(session)
    result = ledger.transfer(
        f"deposit:{key.strip() if key else uuid.uuid4().hex}",
        "deposit",
        [Leg(external("deposits"), asset, -value), Leg(person_spot(person.id), asset, value)],
        refs={"person_id": person.id},
    )
    return DepositResult(
        person.id, value, ledger.balance(person_spot(person.id), asset), result.created
    )


def spot_balance(session: Session, person_id: int, asset: str = ASSET) -> Decimal:
    """Return a person's spot wallet balance."""
    return Ledger(session).balance(person_spot(person_id), asset)
