{#- One mark price per market and UTC day from its first bar to the as-of day: the day's close,
    or the last close before it when the day has no bar (carried forward, with the date it is from;
    has_bar false, and such a day counts as unmarked for marks_complete). -#}
with bars as (
    select * from {{ ref('int_mark_daily_closes') }}
),

as_of as (
    select as_of_date from {{ ref('int_as_of') }}
),

as_of_batch as (
    select batch_id from {{ ref('int_as_of') }}
),

markets as (
    select market, symbol, min(price_date) as first_date
    from bars
    group by market, symbol
),

spine as (
    select
        markets.market,
        markets.symbol,
        {{ days_from_to('markets.first_date', 'greatest(markets.first_date, as_of.as_of_date)') }} as price_date
    from markets
    cross join as_of
),

joined as (
    select
        spine.market,
        spine.symbol,
        spine.price_date,
        bars.close_price,
        bars.quote_volume_usd,
        case when bars.close_price is not null then spine.price_date end as bar_date,
        count(bars.close_price) over (
            partition by spine.market, spine.symbol order by spine.price_date rows between unbounded preceding and current row
        ) as bar_group
    from spine
    left join bars
        on spine.market = bars.market and spine.symbol = bars.symbol
        and spine.price_date = bars.price_date
),

filled as (
    select
        market,
        symbol,
        price_date,
        max(close_price) over (partition by market, symbol, bar_group) as mark_price,
        max(bar_date) over (partition by market, symbol, bar_group) as mark_date,
        close_price is not null as has_bar,
        quote_volume_usd
    from joined
)

select filled.*, (select batch_id from as_of_batch) as _batch_id
from filled
