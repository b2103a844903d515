"""Platform services over SQLAlchemy sessions: people and wallets, lead portfolios, copies.

Every service runs inside the caller's transaction, checks every rule before it writes anything,
and raises ``RuleViolation`` on refusal, so a refused request changes nothing (R-IN-2).
"""
