{{ config(materialized='view') }}
{#- The market whose marks value each book's positions: a futures portfolio and its copies trade
    USDⓈ-M perpetuals ('usdm'), a spot portfolio and its copies the spot market ('spot'). -#}
with portfolios as (
    select
        portfolio_id,
        case when mode = 'futures' then 'usdm' else 'spot' end as market,
        _batch_id
    from {{ ref('stg_ledger__lead_portfolios') }}
)

select 'leader' as book_type, portfolio_id as book_id, market, _batch_id
from portfolios

union all

select 'copy' as book_type, copies.copy_id as book_id, portfolios.market, copies._batch_id
from {{ ref('stg_ledger__copies') }} as copies
inner join portfolios on copies.portfolio_id = portfolios.portfolio_id
