with source as (
    select * from {{ source('ledger', 'follower_fills') }}
),

renamed as (
    select
        id as follower_fill_id,
        order_id,
        copy_id,
        leader_fill_id,
        symbol,
        side,
        {{ money('price') }} as price,
        {{ money('quantity') }} as quantity,
        {{ money('fee') }} as fee_usd,
        {{ money('coalesce(realised_pnl, 0)') }} as realised_pnl_usd,
        {{ money('leader_price') }} as leader_price,
        {{ money('slippage_bps') }} as slippage_bps,
        {{ money('rebate') }} as rebate_usd,
        realised_pnl is not null as has_published_pnl,
        copy_delay_ms,
        traded_at,
        cast(traded_at as date) as traded_on,
        _batch_id
    from source
)

select * from renamed
