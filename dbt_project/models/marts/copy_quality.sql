{#- R-X-1 copy quality, one row per scope ('copy' or 'leader'), subject and period (7d, 30d,
    90d, all) ending at the as-of day: intents copied, skipped (in total and by reason), rejected,
    slippage in bps (mean and p95 over copied intents), copy delay in ms (p50, p99) and the
    annualised tracking error stddev(copy return − leader return) × √365 over the days both have
    a return. For a leader the figures pool all its copies. For any other period, query
    fct_copy_outcomes and fct_copy_daily_returns directly. -#}
with as_of as (
    select as_of_date from {{ ref('int_as_of') }}
),

periods as (
    select period, cast(period_days as integer) as period_days from {{ ref('metric_periods') }}
),

outcomes as (
    select fct_copy_outcomes.*, periods.period
    from {{ ref('fct_copy_outcomes') }} as fct_copy_outcomes
    cross join periods
    cross join as_of
    where fct_copy_outcomes.created_on <= as_of.as_of_date
      and (periods.period_days is null or fct_copy_outcomes.created_on > as_of.as_of_date - periods.period_days)
),

differences as (
    select
        copy_returns.copy_id,
        copies.portfolio_id,
        periods.period,
        copy_returns.daily_return - leader_returns.daily_return as return_difference
    from {{ ref('fct_copy_daily_returns') }} as copy_returns
    inner join {{ ref('stg_ledger__copies') }} as copies on copy_returns.copy_id = copies.copy_id
    inner join {{ ref('fct_leader_daily_returns') }} as leader_returns
        on copies.portfolio_id = leader_returns.portfolio_id
        and copy_returns.return_date = leader_returns.return_date
    cross join periods
    cross join as_of
    where copy_returns.daily_return is not null
      and leader_returns.daily_return is not null
      and copy_returns.return_date >= copies.started_on
      and (copies.stopped_on is null or copy_returns.return_date < copies.stopped_on)
      and copy_returns.return_date <= as_of.as_of_date
      and (periods.period_days is null or copy_returns.return_date > as_of.as_of_date - periods.period_days)
),

{% for scope, key in [('copy', 'copy_id'), ('leader', 'portfolio_id')] %}
{{ scope }}_counts as (
    select
        '{{ scope }}' as scope,
        {{ key }} as subject_id,
        period,
        count(*) as intents,
        sum(case when is_copied then 1 else 0 end) as copied,
        sum(case when is_skipped then 1 else 0 end) as skipped,
        sum(case when is_rejected then 1 else 0 end) as rejected,
        avg(slippage_bps) as slippage_bps_mean,
        percentile_cont(0.95) within group (order by slippage_bps) as slippage_bps_p95,
        percentile_cont(0.50) within group (order by copy_delay_ms) as delay_ms_p50,
        percentile_cont(0.99) within group (order by copy_delay_ms) as delay_ms_p99
    from outcomes
    group by {{ key }}, period
),

{{ scope }}_reasons as (
    select subject_id, period, {{ dbt.listagg("reason || '=' || cast(skips as varchar(20))", "', '", "order by reason") }} as skipped_by_reason
    from (
        select {{ key }} as subject_id, period, reason, count(*) as skips
        from outcomes
        where is_skipped
        group by {{ key }}, period, reason
    ) as by_reason
    group by subject_id, period
),

{{ scope }}_tracking as (
    select {{ key }} as subject_id, period,
        stddev_samp(return_difference) * sqrt({{ var('annualisation_days') }}) as tracking_error_annual,
        count(*) as tracking_days
    from differences
    group by {{ key }}, period
),

{{ scope }}_rows as (
    select
        c.scope,
        c.subject_id,
        c.period,
        c.intents,
        c.copied,
        c.skipped,
        c.rejected,
        r.skipped_by_reason,
        c.slippage_bps_mean,
        c.slippage_bps_p95,
        c.delay_ms_p50,
        c.delay_ms_p99,
        t.tracking_error_annual,
        coalesce(t.tracking_days, 0) as tracking_days
    from {{ scope }}_counts as c
    left join {{ scope }}_reasons as r on c.subject_id = r.subject_id and c.period = r.period
    left join {{ scope }}_tracking as t on c.subject_id = t.subject_id and c.period = t.period
),
{% endfor %}

unioned as (
    select * from copy_rows
    union all
    select * from leader_rows
)

select
    scope || ':' || cast(subject_id as varchar(20)) || ':' || period as copy_quality_id,
    unioned.*,
    case when scope = 'copy' then subject_id end as copy_id,
    case when scope = 'leader' then subject_id end as portfolio_id,
    (select as_of_date from as_of) as as_of_date
from unioned
