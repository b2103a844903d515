{#- R-MET-4: the leaderboard at the latest metric date, one row per listed lead portfolio and
    period. Default order: Sharpe descending (leaders without a Sharpe — fewer than two days of
    returns — last), then PnL descending, then portfolio id. Listings taken offline (R-LEAD-9) and
    closed portfolios are left out; full portfolios (copiers ≥ follower cap) are marked is_full. -#}
with latest as (
    select max(metric_date) as metric_date from {{ ref('leader_metrics') }}
),

metrics as (
    select leader_metrics.*
    from {{ ref('leader_metrics') }} as leader_metrics
    inner join latest on leader_metrics.metric_date = latest.metric_date
),

portfolios as (
    select * from {{ ref('dim_lead_portfolios') }}
    where is_listed and portfolio_status = 'active'
),

listed as (
    select
        metrics.period,
        metrics.portfolio_id,
        portfolios.nickname,
        portfolios.mode,
        portfolios.visibility,
        metrics.metric_date,
        metrics.sharpe,
        metrics.pnl_usd,
        metrics.roi_pct,
        metrics.mdd_pct,
        metrics.win_rate,
        metrics.copiers,
        portfolios.follower_cap,
        metrics.copiers >= portfolios.follower_cap as is_full,
        metrics.aum_usd,
        metrics.copiers_pnl_usd,
        metrics.history_days,
        metrics.history_days >= 90 as has_90_days_history,
        metrics.marks_complete,
        metrics.unmarked_days
    from metrics
    inner join portfolios on metrics.portfolio_id = portfolios.portfolio_id
)

select
    period || ':' || cast(portfolio_id as varchar(20)) as leaderboard_id,
    listed.*,
    row_number() over (
        partition by period
        order by case when sharpe is null then 1 else 0 end, sharpe desc, pnl_usd desc, portfolio_id
    ) as sharpe_rank,
    (select batch_id from {{ ref('int_as_of') }}) as _batch_id
from listed
