{{ config(
    materialized='incremental',
    unique_key=['book_type', 'book_id', 'symbol', 'position_side', 'position_date'],
    incremental_strategy='delete+insert',
) }}
{#- One row per position (book, symbol, side) and UTC day from its first fill to the as-of day:
    the end-of-day quantity and cost basis (carried over days without fills), the mark price and
    the unrealised PnL = Q × mark − B (docs/metrics.md). A position without any mark price yet is
    carried at cost (unrealised 0). Incremental: days from the earliest day touched by new fills,
    and at least the last var('lookback_days') days, are recomputed. -#}
with fills as (
    select * from {{ ref('int_book_fills_positioned') }}
),

as_of as (
    select as_of_date, batch_id from {{ ref('int_as_of') }}
),

{% if is_incremental() %}
bounds as (
    select least(
        (select max(position_date) from {{ this }}) + 1 - {{ var('lookback_days') }},
        coalesce(
            (select min(traded_on) from fills where _batch_id > {{ last_batch() }}),
            (select as_of_date from as_of)
        )
    ) as start_date
),

carry as (
    select book_type, book_id, symbol, position_side, position_quantity, basis_usd, unpublished_fills
    from {{ this }}
    where position_date = (select start_date from bounds) - 1
),
{% else %}
bounds as (
    select cast(null as date) as start_date
),

carry as (
    select book_type, book_id, symbol, position_side, position_quantity, basis_usd, unpublished_fills
    from fills
    where 1 = 0
),
{% endif %}

positions as (
    select book_type, book_id, symbol, position_side, min(traded_on) as first_on
    from fills
    group by book_type, book_id, symbol, position_side
),

spine as (
    select
        positions.book_type,
        positions.book_id,
        positions.symbol,
        positions.position_side,
        {{ days_from_to(
            'greatest(positions.first_on, coalesce(bounds.start_date, positions.first_on))',
            'as_of.as_of_date') }} as position_date
    from positions
    cross join bounds
    cross join as_of
    where greatest(positions.first_on, coalesce(bounds.start_date, positions.first_on)) <= as_of.as_of_date
),

daily as (
    select
        book_type, book_id, symbol, position_side,
        traded_on as position_date,
        sum(position_change) as quantity_change,
        sum(basis_change_usd) as basis_change_usd,
        max(unpublished_fills) as unpublished_fills
    from fills
    where traded_on >= coalesce((select start_date from bounds), traded_on)
    group by book_type, book_id, symbol, position_side, traded_on
),

grid as (
    select
        spine.*,
        coalesce(daily.quantity_change, 0) as quantity_change,
        coalesce(daily.basis_change_usd, 0) as basis_change_usd,
        coalesce(daily.unpublished_fills, carry.unpublished_fills, 0) as unpublished_today,
        coalesce(carry.position_quantity, 0) as carry_quantity,
        coalesce(carry.basis_usd, 0) as carry_basis
    from spine
    left join daily
        on spine.book_type = daily.book_type and spine.book_id = daily.book_id
        and spine.symbol = daily.symbol and spine.position_side = daily.position_side
        and spine.position_date = daily.position_date
    left join carry
        on spine.book_type = carry.book_type and spine.book_id = carry.book_id
        and spine.symbol = carry.symbol and spine.position_side = carry.position_side
),

carried as (
    select
        grid.book_type,
        grid.book_id,
        grid.symbol,
        grid.position_side,
        grid.position_date,
        carry_quantity + sum(quantity_change) over position_window as position_quantity,
        carry_basis + sum(basis_change_usd) over position_window as basis_usd,
        max(unpublished_today) over position_window as unpublished_fills
    from grid
    window position_window as (
        partition by book_type, book_id, symbol, position_side
        order by position_date rows between unbounded preceding and current row
    )
),

marked as (
    select
        carried.*,
        marks.mark_price,
        marks.mark_date,
        case
            -- flat: nothing to mark; an unpublished (spot) position keeps its realised result here
            when carried.position_quantity = 0
                then case when carried.unpublished_fills > 0 then -carried.basis_usd else 0 end
            when marks.mark_price is null then 0
            else carried.position_quantity * marks.mark_price - carried.basis_usd
        end as unrealised_exact
    from carried
    left join {{ ref('int_mark_prices_daily') }} as marks
        on carried.symbol = marks.symbol and carried.position_date = marks.price_date
)

select
    book_type,
    book_id,
    symbol,
    position_side,
    position_date,
    position_quantity,
    basis_usd,
    mark_price,
    mark_date,
    {{ round_money('unrealised_exact') }} as unrealised_pnl_usd,
    unpublished_fills,
    (select batch_id from as_of) as _batch_id
from marked
