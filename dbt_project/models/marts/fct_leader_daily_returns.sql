{{ config(
    materialized='incremental',
    unique_key=['portfolio_id', 'return_date'],
    incremental_strategy='delete+insert',
) }}
{{ book_daily_returns('fct_leader_daily_equity', 'portfolio_id') }}
