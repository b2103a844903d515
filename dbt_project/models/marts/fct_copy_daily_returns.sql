{{ config(materialized='view') }}
{#- Daily time-weighted returns of each copy, one row per copy_id and UTC day:
    int_book_daily_returns for book_type 'copy' (the formula lives there). -#}
select
    book_id as copy_id,
    return_date,
    history_days,
    equity_usd,
    previous_equity_usd,
    net_flow_usd,
    capital_base_usd,
    daily_pnl_usd,
    daily_return,
    log_nav,
    previous_log_nav,
    peak_log_nav,
    drawdown_from_peak,
    realised_pnl_usd,
    fees_usd,
    fills,
    closing_fills,
    winning_fills,
    unmarked_positions,
    _batch_id
from {{ ref('int_book_daily_returns') }}
where book_type = 'copy'
