with source as (
    select * from {{ source('ledger', 'copies') }}
),

renamed as (
    select
        id as copy_id,
        portfolio_id,
        follower_person_id,
        status as copy_status,
        sizing_mode,
        stop_reason,
        {{ money('allocation') }} as allocation_usd,
        started_at,
        stopped_at,
        cast(started_at as date) as started_on,
        cast(stopped_at as date) as stopped_on
    from source
)

select * from renamed
