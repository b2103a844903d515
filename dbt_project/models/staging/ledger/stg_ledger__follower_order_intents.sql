with source as (
    select * from {{ source('ledger', 'follower_order_intents') }}
),

renamed as (
    select
        id as intent_id,
        leader_fill_id,
        copy_id,
        leg,
        kind as intent_kind,
        symbol,
        side,
        outcome,
        reason,
        {{ money('quantity') }} as quantity,
        {{ money('computed_quantity') }} as computed_quantity,
        created_at,
        sent_at,
        acked_at,
        cast(created_at as date) as created_on,
        _batch_id
    from source
)

select * from renamed
