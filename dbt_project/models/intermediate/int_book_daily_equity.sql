{{ config(
    materialized='incremental',
    unique_key=['book_type', 'book_id', 'equity_date'],
    incremental_strategy='delete+insert',
) }}
{#- Daily equity of every book — lead portfolios ('leader') and copies ('copy') — one row per book
    and UTC day from its first day to the as-of day (docs/metrics.md, "Daily equity"):

    equity(d) = Σ flows to d + Σ realised PnL to d − Σ fees to d + unrealised PnL at the end of d

    A book's first day is the earliest of its opening (portfolio created, copy started), its first
    flow and its first fill. fct_leader_daily_equity and fct_copy_daily_equity are this model per
    book type.

    Incremental: rows from the earliest day touched by new fills, flows or positions (and at least
    the last var('lookback_days') days) are recomputed, continuing the cumulative sums of the day
    before; a book not seen before is computed from its first day. -#}
with as_of as (
    select as_of_date, batch_id from {{ ref('int_as_of') }}
),

books as (
    select 'leader' as book_type, portfolio_id as book_id, created_on as opened_on
    from {{ ref('stg_ledger__lead_portfolios') }}
    union all
    select 'copy' as book_type, copy_id as book_id, started_on as opened_on
    from {{ ref('stg_ledger__copies') }}
),

flows as (
    select book_type, book_id, flow_on, flow_usd, _batch_id
    from {{ ref('int_book_flows') }}
),

fills as (
    select book_type, book_id, traded_on, fills, closing_fills, winning_fills, realised_pnl_usd, fees_usd, _batch_id
    from {{ ref('int_book_fills_daily') }}
),

positions as (
    select book_type, book_id, unrealised_date as position_date, unrealised_pnl_usd, unmarked_positions, _batch_id
    from {{ ref('int_book_unrealised_daily') }}
),

first_flows as (
    select book_type, book_id, min(flow_on) as first_on from flows group by book_type, book_id
),

first_fills as (
    select book_type, book_id, min(traded_on) as first_on from fills group by book_type, book_id
),

first_days as (
    select
        books.book_type,
        books.book_id,
        least(
            books.opened_on,
            coalesce(first_flows.first_on, books.opened_on),
            coalesce(first_fills.first_on, books.opened_on)
        ) as first_on
    from books
    left join first_flows on books.book_type = first_flows.book_type and books.book_id = first_flows.book_id
    left join first_fills on books.book_type = first_fills.book_type and books.book_id = first_fills.book_id
),

{% if is_incremental() %}
bounds as (
    select least(
        (select max(equity_date) from {{ this }}) + 1 - {{ var('lookback_days') }},
        coalesce((select min(flow_on) from flows where _batch_id > {{ last_batch() }}), (select as_of_date from as_of)),
        coalesce((select min(traded_on) from fills where _batch_id > {{ last_batch() }}), (select as_of_date from as_of)),
        coalesce((select min(position_date) from positions where _batch_id > {{ last_batch() }}), (select as_of_date from as_of))
    ) as start_date
),

known as (
    select book_type, book_id, max(equity_date) as last_date
    from {{ this }}
    group by book_type, book_id
),

starts as (
    select
        first_days.book_type,
        first_days.book_id,
        first_days.first_on,
        case when known.book_id is null then first_days.first_on
             else greatest(first_days.first_on, (select start_date from bounds)) end as start_on
    from first_days
    left join known on first_days.book_type = known.book_type and first_days.book_id = known.book_id
),

carry as (
    select
        this.book_type,
        this.book_id,
        this.cumulative_flow_usd,
        this.cumulative_realised_pnl_usd,
        this.cumulative_fees_usd
    from {{ this }} as this
    inner join starts
        on this.book_type = starts.book_type and this.book_id = starts.book_id
        and this.equity_date = starts.start_on - 1
),
{% else %}
starts as (
    select book_type, book_id, first_on, first_on as start_on from first_days
),

carry as (
    select
        book_type,
        book_id,
        cast(0 as decimal(38, 8)) as cumulative_flow_usd,
        cast(0 as decimal(38, 8)) as cumulative_realised_pnl_usd,
        cast(0 as decimal(38, 8)) as cumulative_fees_usd
    from books
    where 1 = 0
),
{% endif %}

spine as (
    select
        starts.book_type,
        starts.book_id,
        starts.first_on,
        {{ days_from_to('starts.start_on', 'as_of.as_of_date') }} as equity_date
    from starts
    cross join as_of
    where starts.start_on <= as_of.as_of_date
),

range_start as (
    select min(start_on) as start_on from starts
),

daily_flows as (
    select book_type, book_id, flow_on as equity_date, sum(flow_usd) as net_flow_usd
    from flows
    where flow_on >= (select start_on from range_start)
    group by book_type, book_id, flow_on
),

daily_fills as (
    select
        book_type,
        book_id,
        traded_on as equity_date,
        sum(fills) as fills,
        sum(closing_fills) as closing_fills,
        sum(winning_fills) as winning_fills,
        sum(realised_pnl_usd) as realised_pnl_usd,
        sum(fees_usd) as fees_usd
    from fills
    where traded_on >= (select start_on from range_start)
    group by book_type, book_id, traded_on
),

daily_positions as (
    select book_type, book_id, position_date as equity_date, unrealised_pnl_usd, unmarked_positions
    from positions
    where position_date >= (select start_on from range_start)
),

joined as (
    select
        spine.book_type,
        spine.book_id,
        spine.equity_date,
        spine.first_on,
        coalesce(daily_flows.net_flow_usd, 0) as net_flow_usd,
        coalesce(daily_fills.fills, 0) as fills,
        coalesce(daily_fills.closing_fills, 0) as closing_fills,
        coalesce(daily_fills.winning_fills, 0) as winning_fills,
        coalesce(daily_fills.realised_pnl_usd, 0) as realised_pnl_usd,
        coalesce(daily_fills.fees_usd, 0) as fees_usd,
        coalesce(daily_positions.unrealised_pnl_usd, 0) as unrealised_pnl_usd,
        coalesce(daily_positions.unmarked_positions, 0) as unmarked_positions,
        coalesce(carry.cumulative_flow_usd, 0) as carry_flow,
        coalesce(carry.cumulative_realised_pnl_usd, 0) as carry_realised,
        coalesce(carry.cumulative_fees_usd, 0) as carry_fees
    from spine
    left join daily_flows
        on spine.book_type = daily_flows.book_type and spine.book_id = daily_flows.book_id
        and spine.equity_date = daily_flows.equity_date
    left join daily_fills
        on spine.book_type = daily_fills.book_type and spine.book_id = daily_fills.book_id
        and spine.equity_date = daily_fills.equity_date
    left join daily_positions
        on spine.book_type = daily_positions.book_type and spine.book_id = daily_positions.book_id
        and spine.equity_date = daily_positions.equity_date
    left join carry on spine.book_type = carry.book_type and spine.book_id = carry.book_id
),

cumulative as (
    select
        joined.*,
        carry_flow + sum(net_flow_usd) over book_window as cumulative_flow_usd,
        carry_realised + sum(realised_pnl_usd) over book_window as cumulative_realised_pnl_usd,
        carry_fees + sum(fees_usd) over book_window as cumulative_fees_usd
    from joined
    window book_window as (
        partition by book_type, book_id order by equity_date rows between unbounded preceding and current row
    )
)

select
    book_type,
    book_id,
    equity_date,
    equity_date - first_on + 1 as history_days,
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
    cast(cumulative_flow_usd + cumulative_realised_pnl_usd - cumulative_fees_usd + unrealised_pnl_usd
        as decimal(38, 8)) as equity_usd,
    (select batch_id from as_of) as _batch_id
from cumulative
