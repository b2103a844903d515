with source as (
    select * from {{ source('ledger', 'ledger_postings') }}
),

renamed as (
    select
        id as posting_id,
        transfer_id,
        account_id,
        asset,
        {{ money('amount') }} as amount,
        _batch_id
    from source
)

select * from renamed
