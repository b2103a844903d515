{{ config(
    materialized='incremental',
    unique_key=['book_type', 'book_id', 'unrealised_date'],
    incremental_strategy='delete+insert',
    pre_hook="{{ clear_unrealised_from_start() }}",
) }}
{#- One row per book and UTC day on which it holds an open position: the unrealised PnL of its
    open positions at the day's mark (of the book's market: usdm for futures, spot for spot),
    Σ (Q × mark − B) rounded to 1e-8; unmarked_positions/unmarked_symbols name the open positions
    whose market had no mark that day (marks_complete in leader_metrics). A position holds from its
    fill day to the day before its next fill day (or the as-of day), so days without trades carry
    it and re-mark it. A market without any mark yet is carried at cost (0). A flat position
    whose fills had no published realised PnL keeps that result here (−B).

    Incremental: days from the earliest day touched by changed positions, and at least the last
    var('lookback_days') days (a day's mark price may arrive late), are recomputed; a pre-hook
    first deletes those days, since a book may hold nothing on a day it held something before. -#}
with positions as (
    select * from {{ ref('int_book_positions') }}
),

as_of as (
    select as_of_date, batch_id from {{ ref('int_as_of') }}
),

bounds as (
    {% if is_incremental() %}
    select least(
        (select max(unrealised_date) from {{ this }}) + 1 - {{ var('lookback_days') }},
        coalesce(
            (select min(traded_on) from positions where _batch_id > {{ last_batch() }}),
            (select as_of_date from as_of)
        )
    ) as start_on
    {% else %}
    select min(traded_on) as start_on from positions
    {% endif %}
),

last_before as (
    select book_type, book_id, symbol, position_side, max(traded_on) as traded_on
    from positions
    where traded_on < (select start_on from bounds)
    group by book_type, book_id, symbol, position_side
),

states as (
    select positions.*
    from positions
    where traded_on >= (select start_on from bounds)

    union all

    select positions.*
    from positions
    inner join last_before
        on positions.book_type = last_before.book_type and positions.book_id = last_before.book_id
        and positions.symbol = last_before.symbol and positions.position_side = last_before.position_side
        and positions.traded_on = last_before.traded_on
),

intervals as (
    select
        states.*,
        greatest(states.traded_on, (select start_on from bounds)) as from_on,
        coalesce(
            lead(states.traded_on) over (
                partition by states.book_type, states.book_id, states.symbol, states.position_side
                order by states.traded_on
            ) - 1,
            (select as_of_date from as_of)
        ) as to_on
    from states
),

held as (
    select
        book_type,
        book_id,
        symbol,
        position_quantity,
        basis_usd,
        unpublished_to_date,
        {{ days_from_to('from_on', 'to_on') }} as unrealised_date
    from intervals
    where from_on <= to_on
      and (position_quantity <> 0 or (unpublished_to_date > 0 and basis_usd <> 0))
),

marked as (
    select
        held.book_type,
        held.book_id,
        held.symbol,
        held.unrealised_date,
        case
            when held.position_quantity = 0 then -held.basis_usd
            when marks.mark_price is null then 0
            else held.position_quantity * marks.mark_price - held.basis_usd
        end as unrealised_exact,
        case when held.position_quantity <> 0 then 1 else 0 end as is_open,
        -- unmarked: no mark of the day itself (none yet: carried at cost; or an older close carried)
        case when held.position_quantity <> 0 and coalesce(marks.has_bar, false) = false then 1 else 0 end as is_unmarked
    from held
    inner join {{ ref('int_book_markets') }} as books
        on held.book_type = books.book_type and held.book_id = books.book_id
    left join {{ ref('int_mark_prices_daily') }} as marks
        on books.market = marks.market and held.symbol = marks.symbol
        and held.unrealised_date = marks.price_date
)

select
    book_type,
    book_id,
    unrealised_date,
    {{ round_money('sum(unrealised_exact)') }} as unrealised_pnl_usd,
    sum(is_open) as open_positions,
    sum(is_unmarked) as unmarked_positions,
    -- FILTER, not a CASE inside the aggregate: an ordered aggregate sorts every input row of its
    -- group, and unmarked rows are few (the CASE form made this the slowest step of the model at
    -- the benchmark's scale). PostgreSQL and DuckDB both take this syntax.
    string_agg(symbol, ',' order by symbol) filter (where is_unmarked = 1) as unmarked_symbols,
    (select batch_id from as_of) as _batch_id
from marked
group by book_type, book_id, unrealised_date
