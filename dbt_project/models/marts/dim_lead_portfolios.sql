{#- One row per lead portfolio: what it is, whether it is listed, and how full it is now. -#}
with portfolios as (
    select * from {{ ref('stg_ledger__lead_portfolios') }}
),

active_copies as (
    select portfolio_id, count(*) as active_copies
    from {{ ref('stg_ledger__copies') }}
    where copy_status = 'active'
    group by portfolio_id
)

select
    portfolios.portfolio_id,
    portfolios.leader_person_id,
    portfolios.nickname,
    portfolios.mode,
    portfolios.visibility,
    portfolios.portfolio_status,
    portfolios.offline_reason,
    portfolios.capital_usd,
    portfolios.profit_share_ratio,
    portfolios.follower_cap,
    coalesce(active_copies.active_copies, 0) as active_copies,
    portfolios.is_listed,
    coalesce(active_copies.active_copies, 0) >= portfolios.follower_cap as is_full,
    portfolios.created_at,
    portfolios.closed_at
from portfolios
left join active_copies on portfolios.portfolio_id = active_copies.portfolio_id
