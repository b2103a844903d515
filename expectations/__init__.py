"""Great Expectations suites and checkpoints of the ledger, as code (R-LED-*, R-X-4).

Import ``expectations.ledger_integrity`` for GX (heavy); ``expectations.ledger_rules`` holds the
rules as plain SQL and imports nothing else.
"""
