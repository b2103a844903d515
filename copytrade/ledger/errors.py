"""Ledger refusals; each names the rule it protects."""

from copytrade.domain.errors import RuleViolation


class LedgerError(RuleViolation):
    """A transfer was refused; nothing was written."""


class UnbalancedTransfer(LedgerError):
    """Postings of a transfer do not sum to zero per asset (R-LED-1)."""


class NegativeBalance(LedgerError):
    """A transfer would take an account that forbids it below zero (R-LED-2)."""


class IdempotencyConflict(LedgerError):
    """The idempotency key was already used for a transfer with different content."""
