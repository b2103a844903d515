{#- The last UTC day the warehouse describes: var('as_of_date') or the latest day of any fill or
    flow. Every daily model runs its calendar up to this day. -#}
with activity as (
    select max(traded_on) as last_on from {{ ref('stg_ledger__leader_fills') }}
    union all
    select max(traded_on) from {{ ref('stg_ledger__follower_fills') }}
    union all
    select max(transferred_on) from {{ ref('stg_ledger__transfers') }}
    union all
    select max(created_on) from {{ ref('stg_ledger__lead_portfolios') }}
),

batches as (
    select max(_batch_id) as max_batch_id from {{ ref('stg_ledger__leader_fills') }}
    union all
    select max(_batch_id) from {{ ref('stg_ledger__follower_fills') }}
    union all
    select max(_batch_id) from {{ ref('stg_ledger__transfers') }}
)

select
    {% if var('as_of_date') %}cast('{{ var("as_of_date") }}' as date){% else %}(select max(last_on) from activity){% endif %} as as_of_date,
    (select coalesce(max(max_batch_id), 0) from batches) as batch_id
