with source as (
    select * from {{ source('ledger', 'mark_prices') }}
),

renamed as (
    select
        id as mark_price_id,
        symbol,
        {{ money('price') }} as close_price,
        {{ money('quote_volume') }} as quote_volume_usd,
        cast(price_date as date) as price_date
    from source
)

select * from renamed
