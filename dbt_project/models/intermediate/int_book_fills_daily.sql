{{ config(
    materialized='incremental',
    unique_key=['book_type', 'book_id', 'symbol', 'position_side', 'traded_on'],
    incremental_strategy='delete+insert',
) }}
{#- The fills of each position (book, symbol, position side) summed per UTC day — the grain the
    position and equity models work at (10 million fills become a few million position-days).

    side quantity x = +q for a fill that adds to its side (long: buy, short: sell; one-way 'net'
    positions: buy), −q otherwise. fill_basis = Σ (signed q·p + realised PnL): the change of the
    average-cost basis the day's fills make (the exchange publishes realised PnL at average cost,
    so a close removes exactly q·p − r). The reducing fills' quantity, notional and realised PnL
    are kept for pricing prehistory (see int_book_positions). Incremental: days from the earliest
    day of new fills are recomputed. -#}
with fills as (
    select * from {{ ref('int_book_fills_unioned') }}
    {% if is_incremental() %}
    where traded_at >= (
        select cast(coalesce(min(traded_on), cast('9999-12-31' as date)) as timestamp)
        from {{ ref('int_book_fills_unioned') }}
        where _batch_id > {{ last_batch() }}
    )
    {% endif %}
),

signed as (
    select
        fills.*,
        case when position_side = 'short' then -signed_quantity else signed_quantity end as side_quantity,
        case when position_side = 'short' then -1 else 1 end as side_sign
    from fills
)

select
    book_type,
    book_id,
    symbol,
    position_side,
    traded_on,
    max(side_sign) as side_sign,
    count(*) as fills,
    sum(case when is_opening = false then 1 else 0 end) as closing_fills,
    sum(case when is_opening = false and realised_pnl_usd > 0 then 1 else 0 end) as winning_fills,
    sum(side_quantity) as side_quantity,
    sum(signed_quantity * price + realised_pnl_usd) as fill_basis_usd,
    sum(realised_pnl_usd) as realised_pnl_usd,
    sum(fee_usd) as fees_usd,
    sum(case when has_published_pnl then 0 else 1 end) as unpublished_fills,
    sum(case when side_quantity < 0 then quantity else 0 end) as reduced_quantity,
    sum(case when side_quantity < 0 then quantity * price else 0 end) as reduced_notional_usd,
    sum(case when side_quantity < 0 then realised_pnl_usd else 0 end) as reduced_realised_pnl_usd,
    max(_batch_id) as _batch_id
from signed
group by book_type, book_id, symbol, position_side, traded_on
