"""Copy-trading platform: leader fills in, follower orders out, an exact double-entry ledger."""

__version__ = "0.1.0"
