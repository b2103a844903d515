{{ config(
    materialized='incremental',
    unique_key=['book_type', 'book_id', 'return_date'],
    incremental_strategy='delete+insert',
) }}
{#- Daily time-weighted returns of every book (flows neutralised), from int_book_daily_equity.
    Flows count at the start of their day (docs/metrics.md, "Daily returns"):

    capital_base(d) = equity(d−1) + net_flow(d)
    pnl(d)          = equity(d) − equity(d−1) − net_flow(d)
    return(d)       = pnl(d) / capital_base(d)        (null when capital_base ≤ 0)
    log_nav(d)      = Σ ln(1 + return) to d           (the flow-free NAV index is exp(log_nav))

    fct_leader_daily_returns and fct_copy_daily_returns are this model per book type. -#}
with equity as (
    select * from {{ ref('int_book_daily_equity') }}
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
    select book_type, book_id, log_nav, peak_log_nav
    from {{ this }}
    where return_date = (select start_date from bounds) - 1
),
{% else %}
batch as (
    select * from equity
),

carry as (
    select book_type, book_id, cast(0 as double precision) as log_nav, cast(0 as double precision) as peak_log_nav
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
    window book_window as (partition by book_type, book_id order by equity_date)
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
            partition by returns.book_type, returns.book_id order by returns.equity_date
            rows between unbounded preceding and current row
        ) as log_nav,
        coalesce(carry.peak_log_nav, 0) as carry_peak
    from returns
    left join carry on returns.book_type = carry.book_type and returns.book_id = carry.book_id
),

peaked as (
    -- the running peak of the NAV index since inception (NAV 1 before the first day: log 0)
    select
        indexed.*,
        greatest(carry_peak, max(log_nav) over (
            partition by book_type, book_id order by equity_date
            rows between unbounded preceding and current row
        ), 0) as peak_log_nav
    from indexed
)

select
    book_type,
    book_id,
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
