"""Analytics: the ledger → Parquet extract, market bars and the dbt warehouse of leader metrics."""
