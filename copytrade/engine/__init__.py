"""The copy engine: leader fills in, follower orders out, fills recorded in the ledger.

Read in order: ``core`` (the coordinator), then its stages ``accept`` (stream event → leader
fill, checks in ``ingest``, R-IN-1), ``size`` (book + fill → intent batch, through
``copytrade.domain.sizing``), ``persist`` (the fill and its intents before any send, R-COPY-11),
``send`` (through ``dispatch`` and the exchange port), ``record`` (outcomes, fills and ledger
postings through ``copytrade.ledger.fill_transfers``), ``guards`` (with ``risk`` and
``closing``); then ``reconcile`` and ``resync`` (unknown outcomes and drift), ``runner`` and
``service`` (the long-running loop), ``wiring`` (gateways per exchange account), ``importer``
(history import).
"""
