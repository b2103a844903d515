"""Test support: fixtures, fakes and data generators for tests and benchmarks, never the product.

``settlement`` (settlement cases and bulk populations posted through the real ledger),
``engine_world`` (people, portfolios, copies and paper-exchange accounts for the engine),
``fake_exchange`` (an in-memory exchange implementing the gateway protocol, faults on demand),
``paper_exchange`` (a running paper exchange in a thread or a process, and ccxt clients on it),
``synthetic`` (synthetic ledgers for the warehouse tests and benchmarks/metrics.py) and
``reference`` (the pandas per-leader loop the warehouse's metrics are checked against).
Nothing under ``copytrade/`` imports this package (an import-linter contract checks it).
"""
