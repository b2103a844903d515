{#- One mark per market, symbol and UTC minute (models/market.py): the price and the interval's
    quote volume (0 when unknown). -#}
with source as (
    select * from {{ source('ledger', 'mark_prices') }}
),

renamed as (
    select
        id as mark_price_id,
        symbol,
        market,
        marked_at,
        cast(marked_at as date) as marked_on,
        {{ money('price') }} as mark_price,
        {{ money('quote_volume') }} as quote_volume_usd,
        _batch_id
    from source
)

select * from renamed
