{{ config(
    materialized='incremental',
    unique_key=['copy_id', 'return_date'],
    incremental_strategy='delete+insert',
) }}
{{ book_daily_returns('fct_copy_daily_equity', 'copy_id') }}
