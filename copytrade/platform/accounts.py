"""Exchange accounts: the key a copy or a lead portfolio trades with (secrets by reference only).

``api_key_id`` is the public key; ``credentials_ref`` says where the secret lives (``env:NAME``,
``file:PATH`` or ``prefect:BLOCK``, resolved by ``engine.wiring`` and ``flows/_secrets.py``);
the secret itself never reaches the database (docs/operations.md, "Secrets and exchange keys").
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from copytrade.domain.errors import RuleViolation
from models import ExchangeAccount

REF_SCHEMES = ("env", "file", "prefect")
VENUES = ("paper", "binance")


def check_credentials(api_key_id: object, credentials_ref: object) -> tuple[str, str]:
    """Return the key and the reference, or refuse naming the field (R-IN-2)."""
    key = str(api_key_id or "").strip()
    if not key or len(key) > 128 or any(ch.isspace() for ch in key):
        raise RuleViolation(
            "api_key", api_key_id, "R-IN-2", "an API key id is 1-128 characters, no spaces"
        )
    ref = str(credentials_ref or "").strip()
    scheme, _, name = ref.partition(":")
    if scheme not in REF_SCHEMES or not name or len(ref) > 256:
        raise RuleViolation(
            "credentials_ref",
            # Not a reference: perhaps the secret itself, pasted by mistake; never echo it.
            f"<hidden, {len(ref)} characters>" if ref and scheme not in REF_SCHEMES else ref,
            "R-IN-2",
            "where the secret lives: env:NAME, file:PATH or prefect:BLOCK (never the secret)",
        )
    return key, ref


def link_account(
    session: Session,
    person_id: int,
    market: str,
    api_key_id: object,
    credentials_ref: object,
    venue: str = "paper",
) -> ExchangeAccount:
    """Return the person's exchange account for this key, recording it the first time.

    A key is one account (venue, market, key): another person's key is refused.
    """
    key, ref = check_credentials(api_key_id, credentials_ref)
    if venue not in VENUES:
        raise RuleViolation("venue", venue, "R-IN-2", f"a venue is one of {', '.join(VENUES)}")
    account = session.scalar(
        select(ExchangeAccount).where(
            ExchangeAccount.venue == venue,
            ExchangeAccount.market == market,
            ExchangeAccount.api_key_id == key,
        )
    )
    if account is not None:
        if account.person_id != person_id:
            raise RuleViolation(
                "api_key", f"{key[:8]}…", "R-IN-2", "this key belongs to another person's account"
            )
        account.credentials_ref = ref
        return account
    account = ExchangeAccount(
        person_id=person_id, venue=venue, market=market, api_key_id=key, credentials_ref=ref
    )
    session.add(account)
    session.flush()
    return account
