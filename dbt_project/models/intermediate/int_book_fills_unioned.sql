{{ config(materialized='view') }}
{#- Every fill of every book: leader fills of lead portfolios and follower fills of copies, with
    the signed quantity (buy +, sell −). -#}
select
    'leader' as book_type,
    portfolio_id as book_id,
    leader_fill_id as fill_id,
    symbol,
    position_side,
    side,
    price,
    quantity,
    case when side = 'buy' then quantity else -quantity end as signed_quantity,
    fee_usd,
    realised_pnl_usd,
    has_published_pnl,
    is_opening,
    traded_at,
    traded_on,
    _batch_id
from {{ ref('stg_ledger__leader_fills') }}

union all

select
    'copy' as book_type,
    copy_id as book_id,
    follower_fill_id as fill_id,
    symbol,
    'net' as position_side,
    side,
    price,
    quantity,
    case when side = 'buy' then quantity else -quantity end as signed_quantity,
    fee_usd,
    realised_pnl_usd,
    has_published_pnl,
    cast(null as boolean) as is_opening,
    traded_at,
    traded_on,
    _batch_id
from {{ ref('stg_ledger__follower_fills') }}
