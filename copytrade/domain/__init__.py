"""Pure product rules and math: no I/O, no database, no exchange (R-ACC, R-LEAD, R-COPY, R-SET, R-FEE)."""
