with source as (
    select * from {{ source('ledger', 'lead_portfolios') }}
),

renamed as (
    select
        id as portfolio_id,
        leader_person_id,
        nickname,
        mode,
        visibility,
        status as portfolio_status,
        capital_asset,
        offline_reason,
        {{ money('capital') }} as capital_usd,
        {{ money('profit_share_ratio') }} as profit_share_ratio,
        follower_cap,
        is_listed,
        created_at,
        closed_at,
        cast(created_at as date) as created_on
    from source
)

select * from renamed
