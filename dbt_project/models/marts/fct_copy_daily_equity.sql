{{ config(materialized='view') }}
{#- Daily equity of each copy, one row per copy_id and UTC day: int_book_daily_equity for
    book_type 'copy' (the formula and its incremental build live there). -#}
select
    book_id as copy_id,
    equity_date,
    history_days,
    net_flow_usd,
    fills,
    closing_fills,
    winning_fills,
    realised_pnl_usd,
    fees_usd,
    unrealised_pnl_usd,
    unmarked_positions,
    cumulative_flow_usd,
    cumulative_realised_pnl_usd,
    cumulative_fees_usd,
    equity_usd,
    _batch_id
from {{ ref('int_book_daily_equity') }}
where book_type = 'copy'
