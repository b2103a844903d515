with source as (
    select * from {{ source('ledger', 'ledger_transfers') }}
),

renamed as (
    select
        id as transfer_id,
        seq as transfer_seq,
        code as transfer_code,
        created_at as transferred_at,
        cast(created_at as date) as transferred_on,
        _batch_id
    from source
)

select * from renamed
