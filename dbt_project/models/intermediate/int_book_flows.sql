{#- Cash flows into and out of books: postings on `leader:<portfolio>:capital` and
    `follower:<copy>:cash` whose transfer code is a flow code (var flow_codes). A book with no
    flow posting at all (e.g. an imported leader) gets its capital or allocation as one flow at
    creation; such rows carry _batch_id 0 (new books are found by incremental models anyway).

    Capital of an imported history (docs/metrics.md): a lead portfolio with imported fills counts
    its opening capital (its first flow) from the earliest capital_since of its imports (default
    the day of the first imported fill) when that is earlier than the posting, so the imported
    days run on the declared capital. flow_on is the effective day; flow_at and posted_on say when
    the ledger recorded it. -#}
with postings as (
    select * from {{ ref('stg_ledger__postings') }}
),

transfers as (
    select * from {{ ref('stg_ledger__transfers') }}
),

accounts as (
    select * from {{ ref('stg_ledger__accounts') }}
    where (address_kind = 'leader' and address_purpose = 'capital')
       or (address_kind = 'follower' and address_purpose = 'cash')
),

ledger_flows as (
    select
        case when accounts.address_kind = 'leader' then 'leader' else 'copy' end as book_type,
        cast(accounts.address_owner as bigint) as book_id,
        postings.posting_id,
        transfers.transfer_code,
        postings.amount as flow_usd,
        transfers.transferred_at as flow_at,
        transfers.transferred_on as flow_on,
        postings._batch_id
    from postings
    inner join transfers on postings.transfer_id = transfers.transfer_id
    inner join accounts on postings.account_id = accounts.account_id
    where transfers.transfer_code in ({{ sql_string_list(var('flow_codes')) }})
),

portfolio_capital as (
    select
        'leader' as book_type,
        portfolio_id as book_id,
        cast(null as bigint) as posting_id,
        'lead_capital' as transfer_code,
        capital_usd as flow_usd,
        created_at as flow_at,
        created_on as flow_on,
        cast(0 as bigint) as _batch_id
    from {{ ref('stg_ledger__lead_portfolios') }} as portfolios
    where not exists (
        select 1 from ledger_flows
        where ledger_flows.book_type = 'leader' and ledger_flows.book_id = portfolios.portfolio_id
    )
),

copy_allocations as (
    select
        'copy' as book_type,
        copy_id as book_id,
        cast(null as bigint) as posting_id,
        'copy_allocation' as transfer_code,
        allocation_usd as flow_usd,
        started_at as flow_at,
        started_on as flow_on,
        cast(0 as bigint) as _batch_id
    from {{ ref('stg_ledger__copies') }} as copies
    where not exists (
        select 1 from ledger_flows
        where ledger_flows.book_type = 'copy' and ledger_flows.book_id = copies.copy_id
    )
),

all_flows as (
    select * from ledger_flows
    union all
    select * from portfolio_capital
    union all
    select * from copy_allocations
),

capital_since as (
    select portfolio_id, min(capital_since) as capital_since
    from {{ ref('stg_ledger__leader_history_imports') }}
    group by portfolio_id
),

ordered as (
    select
        all_flows.*,
        row_number() over (
            partition by all_flows.book_type, all_flows.book_id
            order by all_flows.flow_at, all_flows.posting_id
        ) as flow_number
    from all_flows
)

select
    ordered.book_type,
    ordered.book_id,
    ordered.posting_id,
    ordered.transfer_code,
    ordered.flow_usd,
    ordered.flow_at,
    case
        when ordered.flow_number = 1 and capital_since.capital_since < ordered.flow_on
            then capital_since.capital_since
        else ordered.flow_on
    end as flow_on,
    ordered.flow_on as posted_on,
    ordered._batch_id
from ordered
left join capital_since
    on ordered.book_type = 'leader' and ordered.book_id = capital_since.portfolio_id
