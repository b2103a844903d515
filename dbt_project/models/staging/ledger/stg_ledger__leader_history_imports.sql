{#- Imports of past leader fills, with the UTC day from which the portfolio's capital counts. -#}
with source as (
    select * from {{ source('ledger', 'leader_history_imports') }}
),

renamed as (
    select
        id as history_import_id,
        portfolio_id,
        first_fill_at,
        cast(capital_since as date) as capital_since,
        _batch_id
    from source
)

select * from renamed
