"""The copy engine: leader fills in, follower orders out, fills recorded in the ledger.

Read in order: ``ingest`` (exchange event → leader fill, R-IN-1), ``core`` (sizing through
``copytrade.domain.sizing``, intents persisted by ``persist``, sending through ``dispatch`` and
the exchange port, recording fills through ``copytrade.ledger.fill_transfers``, guards and stops),
``reconcile`` and ``resync`` (unknown outcomes and drift), ``runner`` and ``service`` (the
long-running loop), ``wiring`` (gateways per exchange account), ``importer`` (history import).
"""
