"""Which rows a build's data tests look at: the new extract batch, or everything."""

from __future__ import annotations

from copytrade.analytics.warehouse import Warehouse, rows_to_test_after


def test_incremental_build_tests_only_the_new_batch(tmp_path):
    warehouse = Warehouse.duckdb(tmp_path)
    assert warehouse.path is not None
    warehouse.path.parent.mkdir(parents=True, exist_ok=True)
    warehouse.path.touch()
    assert rows_to_test_after(warehouse, 5, full_refresh=False) == 4
    assert rows_to_test_after(warehouse, 5, full_refresh=True) == -1  # full: every row
    assert rows_to_test_after(warehouse, 1, full_refresh=False) == -1  # first extract
    assert rows_to_test_after(warehouse, None, full_refresh=False) == -1  # nothing extracted


def test_a_missing_warehouse_is_tested_whole(tmp_path):
    assert rows_to_test_after(Warehouse.duckdb(tmp_path / "new"), 5, full_refresh=False) == -1
