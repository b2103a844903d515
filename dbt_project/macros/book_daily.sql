{#- Daily equity of one kind of book (lead portfolios or copies); see fct_leader_daily_equity.

    equity(d) = Σ flows to d + Σ realised PnL to d − Σ fees to d + unrealised PnL at the end of d

    Incremental: rows from the earliest day touched by new fills, flows or positions (and at least
    the last var('lookback_days') days) are recomputed, continuing the cumulative sums of the day
    before; a book not seen before is computed from its first day. -#}
{% macro book_daily_equity(book_type, books_sql, id_column) %}
with as_of as (
    select as_of_date, batch_id from {{ ref('int_as_of') }}
),

books as (
    {{ books_sql }}
),

flows as (
    select book_id, flow_on, flow_usd, _batch_id
    from {{ ref('int_book_flows') }}
    where book_type = '{{ book_type }}'
),

fills as (
    select book_id, traded_on, fills, closing_fills, winning_fills, realised_pnl_usd, fees_usd, _batch_id
    from {{ ref('int_book_fills_daily') }}
    where book_type = '{{ book_type }}'
),

positions as (
    select book_id, unrealised_date as position_date, unrealised_pnl_usd, unmarked_positions, _batch_id
    from {{ ref('int_book_unrealised_daily') }}
    where book_type = '{{ book_type }}'
),

first_flows as (
    select book_id, min(flow_on) as first_on from flows group by book_id
),

first_fills as (
    select book_id, min(traded_on) as first_on from fills group by book_id
),

first_days as (
    select
        books.book_id,
        least(
            books.opened_on,
            coalesce(first_flows.first_on, books.opened_on),
            coalesce(first_fills.first_on, books.opened_on)
        ) as first_on
    from books
    left join first_flows on books.book_id = first_flows.book_id
    left join first_fills on books.book_id = first_fills.book_id
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
    select {{ id_column }} as book_id, max(equity_date) as last_date
    from {{ this }}
    group by {{ id_column }}
),

starts as (
    select
        first_days.book_id,
        first_days.first_on,
        case when known.book_id is null then first_days.first_on
             else greatest(first_days.first_on, (select start_date from bounds)) end as start_on
    from first_days
    left join known on first_days.book_id = known.book_id
),

carry as (
    select
        this.{{ id_column }} as book_id,
        this.cumulative_flow_usd,
        this.cumulative_realised_pnl_usd,
        this.cumulative_fees_usd
    from {{ this }} as this
    inner join starts on this.{{ id_column }} = starts.book_id and this.equity_date = starts.start_on - 1
),
{% else %}
starts as (
    select book_id, first_on, first_on as start_on from first_days
),

carry as (
    select
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
    select book_id, flow_on as equity_date, sum(flow_usd) as net_flow_usd
    from flows
    where flow_on >= (select start_on from range_start)
    group by book_id, flow_on
),

daily_fills as (
    select
        book_id,
        traded_on as equity_date,
        sum(fills) as fills,
        sum(closing_fills) as closing_fills,
        sum(winning_fills) as winning_fills,
        sum(realised_pnl_usd) as realised_pnl_usd,
        sum(fees_usd) as fees_usd
    from fills
    where traded_on >= (select start_on from range_start)
    group by book_id, traded_on
),

daily_positions as (
    select book_id, position_date as equity_date, unrealised_pnl_usd, unmarked_positions
    from positions
    where position_date >= (select start_on from range_start)
),

joined as (
    select
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
    left join daily_flows on spine.book_id = daily_flows.book_id and spine.equity_date = daily_flows.equity_date
    left join daily_fills on spine.book_id = daily_fills.book_id and spine.equity_date = daily_fills.equity_date
    left join daily_positions
        on spine.book_id = daily_positions.book_id and spine.equity_date = daily_positions.equity_date
    left join carry on spine.book_id = carry.book_id
),

cumulative as (
    select
        joined.*,
        carry_flow + sum(net_flow_usd) over book_window as cumulative_flow_usd,
        carry_realised + sum(realised_pnl_usd) over book_window as cumulative_realised_pnl_usd,
        carry_fees + sum(fees_usd) over book_window as cumulative_fees_usd
    from joined
    window book_window as (
        partition by book_id order by equity_date rows between unbounded preceding and current row
    )
)

select
    book_id as {{ id_column }},
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
{% endmacro %}


{#- Daily time-weighted returns of a daily equity model (flows neutralised); see
    fct_leader_daily_returns. Flows count at the start of their day:

    capital_base(d) = equity(d−1) + net_flow(d)
    pnl(d)          = equity(d) − equity(d−1) − net_flow(d)
    return(d)       = pnl(d) / capital_base(d)        (null when capital_base ≤ 0)
    log_nav(d)      = Σ ln(1 + return) to d           (the flow-free NAV index is exp(log_nav)) -#}
{% macro book_daily_returns(equity_model, id_column) %}
with equity as (
    select * from {{ ref(equity_model) }}
),

{% if is_incremental() %}
bounds as (
    select min(equity_date) as start_date
    from equity
    where _batch_id > {{ last_batch() }}
),

batch as (
    select * from equity
    where equity_date >= (select start_date from bounds) - 1
),

carry as (
    select {{ id_column }}, log_nav, peak_log_nav
    from {{ this }}
    where return_date = (select start_date from bounds) - 1
),
{% else %}
batch as (
    select * from equity
),

carry as (
    select {{ id_column }}, cast(0 as double precision) as log_nav, cast(0 as double precision) as peak_log_nav
    from equity
    where 1 = 0
),
{% endif %}

lagged as (
    select
        batch.*,
        coalesce(lag(equity_usd) over book_window, 0) as previous_equity_usd,
        row_number() over book_window as position_in_batch
    from batch
    window book_window as (partition by {{ id_column }} order by equity_date)
),

returns as (
    select
        lagged.*,
        previous_equity_usd + net_flow_usd as capital_base_usd,
        equity_usd - previous_equity_usd - net_flow_usd as daily_pnl_usd,
        case
            when previous_equity_usd + net_flow_usd > 0
                then {{ ratio('equity_usd - previous_equity_usd - net_flow_usd', 'previous_equity_usd + net_flow_usd') }}
        end as daily_return
    from lagged
    {% if is_incremental() %}
    -- the day before the recomputed range only supplies the previous equity
    where not (position_in_batch = 1 and equity_date < (select start_date from bounds))
    {% endif %}
),

indexed as (
    select
        returns.*,
        coalesce(carry.log_nav, 0) + sum({{ log_growth('daily_return') }}) over (
            partition by returns.{{ id_column }} order by returns.equity_date
            rows between unbounded preceding and current row
        ) as log_nav,
        coalesce(carry.peak_log_nav, 0) as carry_peak
    from returns
    left join carry on returns.{{ id_column }} = carry.{{ id_column }}
),

peaked as (
    -- the running peak of the NAV index since inception (NAV 1 before the first day: log 0)
    select
        indexed.*,
        greatest(carry_peak, max(log_nav) over (
            partition by {{ id_column }} order by equity_date
            rows between unbounded preceding and current row
        ), 0) as peak_log_nav
    from indexed
)

select
    {{ id_column }},
    equity_date as return_date,
    history_days,
    equity_usd,
    previous_equity_usd,
    net_flow_usd,
    capital_base_usd,
    daily_pnl_usd,
    daily_return,
    log_nav,
    log_nav - {{ log_growth('daily_return') }} as previous_log_nav,
    peak_log_nav,
    exp(log_nav - peak_log_nav) - 1 as drawdown_from_peak,
    realised_pnl_usd,
    fees_usd,
    fills,
    closing_fills,
    winning_fills,
    unmarked_positions,
    _batch_id
from peaked
{% endmacro %}
