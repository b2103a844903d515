{{ config(materialized='table') }}
{#- The daily mark of each market and UTC day with marks: the day's last mark (its close,
    R-MET-3), the day's summed quote volume (R-X-5) and how many marks the day had. -#}
with marks as (
    select
        *,
        row_number() over (partition by market, symbol, marked_on order by marked_at desc) as newest
    from {{ ref('stg_ledger__mark_prices') }}
)

select
    market,
    symbol,
    marked_on as price_date,
    max(case when newest = 1 then mark_price end) as close_price,
    max(case when newest = 1 then marked_at end) as closed_at,
    sum(quote_volume_usd) as quote_volume_usd,
    count(*) as marks,
    max(_batch_id) as _batch_id
from marks
group by market, symbol, marked_on
