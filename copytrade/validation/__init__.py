"""Ledger validation: the recomputed hash chain and the ``ledger_integrity`` GX checkpoint (R-LED-*, R-X-4)."""

from copytrade.validation.chain import recompute_chain, record_chain_verification
from copytrade.validation.runner import CheckOutcome, ValidationReport, validate_ledger

__all__ = [
    "CheckOutcome",
    "ValidationReport",
    "recompute_chain",
    "record_chain_verification",
    "validate_ledger",
]
