{{ config(
    materialized='incremental',
    unique_key=['portfolio_id', 'equity_date'],
    incremental_strategy='delete+insert',
) }}
{{ book_daily_equity(
    'leader',
    "select portfolio_id as book_id, created_on as opened_on from " ~ ref('stg_ledger__lead_portfolios'),
    'portfolio_id',
) }}
