{{ config(
    materialized='incremental',
    unique_key=['portfolio_id', 'period', 'metric_date'],
    incremental_strategy='delete+insert',
) }}
{#- R-MET-1/2/3: one row per lead portfolio, period (7d, 30d, 90d, all) and metric date.
    Definitions are in the model's yml and docs/metrics.md. A build (re)computes the most recent
    var('metric_dates_per_build') metric dates whose daily returns changed; older rows are kept. -#}
with as_of as (
    select as_of_date from {{ ref('int_as_of') }}
),

returns as (
    select * from {{ ref('fct_leader_daily_returns') }}
),

periods as (
    select period, cast(period_days as integer) as period_days from {{ ref('metric_periods') }}
),

changed as (
    {% if is_incremental() %}
    select min(return_date) as first_changed from returns where _batch_id > {{ last_batch() }}
    {% else %}
    select min(return_date) as first_changed from returns
    {% endif %}
),

metric_dates as (
    select {{ days_from_to(
        'greatest(as_of.as_of_date + 1 - ' ~ var('metric_dates_per_build') ~ ', changed.first_changed)',
        'as_of.as_of_date') }} as metric_date
    from as_of
    cross join changed
    where changed.first_changed is not null
      and greatest(as_of.as_of_date + 1 - {{ var('metric_dates_per_build') }}, changed.first_changed) <= as_of.as_of_date
),

windowed as (
    -- 7, 30 and 90 days: at most 90 rows per portfolio and metric date
    select
        metric_dates.metric_date,
        periods.period,
        periods.period_days,
        returns.*
    from metric_dates
    cross join periods
    inner join returns
        on returns.return_date <= metric_dates.metric_date
        and returns.return_date > metric_dates.metric_date - periods.period_days
    where periods.period_days is not null
),

windowed_drawdowns as (
    -- the peak includes the NAV just before the window (previous_log_nav of its first day)
    select
        windowed.*,
        exp(log_nav - greatest(
            max(previous_log_nav) over (
                partition by portfolio_id, period, metric_date
                order by return_date rows between unbounded preceding and current row
            ),
            log_nav
        )) - 1 as drawdown
    from windowed
),

all_time as (
    -- all time: every day since the first; the running peak since inception is precomputed
    select
        metric_dates.metric_date,
        periods.period,
        periods.period_days,
        returns.*,
        returns.drawdown_from_peak as drawdown
    from metric_dates
    cross join periods
    inner join returns on returns.return_date <= metric_dates.metric_date
    where periods.period_days is null
),

drawdowns as (
    select
        windowed_drawdowns.*,
        {{ log_growth('daily_return') }} as log_growth,
        case
            when history_days = 1 or return_date = metric_date - period_days + 1 then 1 else 0
        end as is_window_start
    from windowed_drawdowns

    union all

    select
        all_time.*,
        {{ log_growth('daily_return') }} as log_growth,
        case when history_days = 1 then 1 else 0 end as is_window_start
    from all_time
),

aggregated as (
    select
        portfolio_id,
        period,
        metric_date,
        min(return_date) as window_start_date,
        count(*) as window_days,
        count(daily_return) as return_days,
        max(history_days) as history_days,
        sum(daily_pnl_usd) as pnl_usd,
        sum(realised_pnl_usd) as realised_pnl_usd,
        sum(fees_usd) as fees_usd,
        sum(net_flow_usd) as net_flow_usd,
        sum(closing_fills) as closing_fills,
        sum(winning_fills) as winning_fills,
        sum(case when unmarked_positions > 0 then 1 else 0 end) as unmarked_days,
        sum(case when return_date = metric_date then equity_usd end) as equity_usd,
        sum(case when is_window_start = 1 then previous_equity_usd else 0 end) as starting_equity_usd,
        sum(net_flow_usd * (metric_date - return_date + 1)) as weighted_flow_usd,
        avg(daily_return) as mean_daily_return,
        stddev_samp(daily_return) as stddev_daily_return,
        sum(log_growth) as total_log_growth,
        min(drawdown) as max_drawdown
    from drawdowns
    group by portfolio_id, period, metric_date
),

capital as (
    -- Modified Dietz capital, exact: equity before the window + Σ flow × days invested / window days
    select
        aggregated.*,
        cast(aggregated.starting_equity_usd
            + {{ money_mul_div('aggregated.weighted_flow_usd', 1, 'aggregated.window_days') }}
            as decimal(38, 8)) as time_weighted_capital_usd
    from aggregated
),

copies as (
    select * from {{ ref('stg_ledger__copies') }}
),

copy_windows as (
    select
        copies.portfolio_id,
        periods.period,
        metric_dates.metric_date,
        sum(copy_returns.daily_pnl_usd) as copiers_pnl_usd,
        sum(case
            when copy_returns.return_date = metric_dates.metric_date
                and copies.started_on <= metric_dates.metric_date
                and (copies.stopped_on is null or copies.stopped_on > metric_dates.metric_date)
            then copy_returns.equity_usd else 0 end) as copy_equity_usd
    from metric_dates
    cross join periods
    inner join {{ ref('fct_copy_daily_returns') }} as copy_returns
        on copy_returns.return_date <= metric_dates.metric_date
        and (periods.period_days is null or copy_returns.return_date > metric_dates.metric_date - periods.period_days)
    inner join copies on copy_returns.copy_id = copies.copy_id
    group by copies.portfolio_id, periods.period, metric_dates.metric_date
),

copiers as (
    select
        copies.portfolio_id,
        metric_dates.metric_date,
        count(*) as copiers
    from metric_dates
    inner join copies
        on copies.started_on <= metric_dates.metric_date
        and (copies.stopped_on is null or copies.stopped_on > metric_dates.metric_date)
    group by copies.portfolio_id, metric_dates.metric_date
),

final as (
    select
        aggregated.portfolio_id,
        aggregated.period,
        aggregated.metric_date,
        aggregated.window_start_date,
        aggregated.window_days,
        aggregated.return_days,
        aggregated.history_days,
        aggregated.pnl_usd,
        aggregated.realised_pnl_usd,
        aggregated.fees_usd,
        aggregated.net_flow_usd,
        aggregated.equity_usd,
        aggregated.time_weighted_capital_usd,
        100 * {{ ratio('aggregated.pnl_usd', 'aggregated.time_weighted_capital_usd') }} as roi_pct,
        100 * (exp(aggregated.total_log_growth) - 1) as twr_pct,
        -- annualised over the number of returns (empyrical: len(returns) / 365 years)
        case when aggregated.return_days > 0 then
            100 * (exp(aggregated.total_log_growth * {{ var('annualisation_days') }} / aggregated.return_days) - 1)
        end as annual_return_pct,
        case
            when aggregated.return_days >= 2 and aggregated.stddev_daily_return > 0
                then (aggregated.mean_daily_return - {{ var('risk_free_rate_annual') }} / {{ var('annualisation_days') }})
                    / aggregated.stddev_daily_return * sqrt({{ var('annualisation_days') }})
        end as sharpe,
        aggregated.stddev_daily_return * sqrt({{ var('annualisation_days') }}) as volatility_annual,
        -- drawdowns are ≤ 0; abs keeps an empty or flat window at 0, never "-0"
        100 * abs(aggregated.max_drawdown) as mdd_pct,
        aggregated.closing_fills,
        aggregated.winning_fills,
        {{ ratio('aggregated.winning_fills', 'aggregated.closing_fills') }} as win_rate,
        aggregated.unmarked_days,
        aggregated.unmarked_days = 0 as marks_complete,
        coalesce(copiers.copiers, 0) as copiers,
        cast(coalesce(aggregated.equity_usd, 0) + coalesce(copy_windows.copy_equity_usd, 0) as decimal(38, 8)) as aum_usd,
        cast(coalesce(copy_windows.copiers_pnl_usd, 0) as decimal(38, 8)) as copiers_pnl_usd,
        (select batch_id from {{ ref('int_as_of') }}) as _batch_id
    from capital as aggregated
    left join copy_windows
        on aggregated.portfolio_id = copy_windows.portfolio_id
        and aggregated.period = copy_windows.period
        and aggregated.metric_date = copy_windows.metric_date
    left join copiers
        on aggregated.portfolio_id = copiers.portfolio_id
        and aggregated.metric_date = copiers.metric_date
)

select * from final
