"""``ExpectNoOffendingRows``: ``UnexpectedRowsExpectation`` that runs its query once, not twice.

GX's ``UnexpectedRowsExpectation`` computes two metrics from the same query — the offending rows
(``fetchmany(200)``) and their count (``SELECT COUNT(*) FROM (query)``) — so every check scans the
ledger twice. On a ledger of millions of postings that doubles the checkpoint. This subclass
depends on the rows alone; the count it reports is exact up to 200 and "at least 200" above.
"""

from __future__ import annotations

from typing import ClassVar

from great_expectations.constants import MAX_RESULT_RECORDS
from great_expectations.expectations import UnexpectedRowsExpectation


class ExpectNoOffendingRows(UnexpectedRowsExpectation):
    """Pass when ``unexpected_rows_query`` returns no row; report up to 20 offending rows."""

    metric_dependencies: ClassVar[tuple[str, ...]] = ("unexpected_rows_query.table",)

    def _validate(self, metrics: dict, runtime_configuration=None, execution_engine=None):
        rows = metrics["unexpected_rows_query.table"] or []
        return {
            "success": not rows,
            "result": {
                "observed_value": len(rows),
                "details": {
                    "unexpected_rows": rows[:20],
                    "truncated": len(rows) >= MAX_RESULT_RECORDS,
                },
            },
        }
