with source as (
    select * from {{ source('ledger', 'leader_fills') }}
),

renamed as (
    select
        id as leader_fill_id,
        portfolio_id,
        exchange_trade_id,
        symbol,
        side,
        coalesce(position_side, 'net') as position_side,
        fee_asset,
        source as fill_source,
        {{ money('price') }} as price,
        {{ money('quantity') }} as quantity,
        {{ money('fee') }} as fee_usd,
        {{ money('coalesce(realised_pnl, 0)') }} as realised_pnl_usd,
        realised_pnl is not null as has_published_pnl,
        is_opening,
        traded_at,
        received_at,
        cast(traded_at as date) as traded_on,
        _batch_id
    from source
)

select * from renamed
