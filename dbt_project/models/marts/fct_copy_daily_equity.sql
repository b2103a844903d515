{{ config(
    materialized='incremental',
    unique_key=['copy_id', 'equity_date'],
    incremental_strategy='delete+insert',
) }}
{{ book_daily_equity(
    'copy',
    "select copy_id as book_id, started_on as opened_on from " ~ ref('stg_ledger__copies'),
    'copy_id',
) }}
