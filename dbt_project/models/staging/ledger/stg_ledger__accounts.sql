with source as (
    select * from {{ source('ledger', 'ledger_accounts') }}
),

renamed as (
    select
        id as account_id,
        address,
        asset,
        {{ dbt.split_part('address', "':'", 1) }} as address_kind,
        {{ dbt.split_part('address', "':'", 2) }} as address_owner,
        {{ dbt.split_part('address', "':'", 3) }} as address_purpose,
        _batch_id
    from source
)

select * from renamed
