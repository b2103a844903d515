{#- R-X-5: how much more follower capital each lead portfolio's markets can absorb at its
    typical trade size before the expected slippage passes var('capacity_slippage_limit') (1 %).

    Square-root impact: expected slippage of an order of notional Q in a market with daily quote
    volume V and daily volatility σ is σ·√(Q/V), so the largest order within the limit L is
    Q_max = V·(L/σ)². Copies scale the leader's trade T (its median notional over the window) by
    copy equity / leader equity E, so one trade sends T·(1 + C/E) to the market; the follower
    capital a market absorbs is C_max = E·(Q_max/T − 1). The portfolio's capacity is the smallest
    C_max over the markets it traded in the window; headroom = capacity − current copy equity
    (floored at 0). V and σ come from the daily bars of the window (σ: sample stddev of daily log
    close-to-close changes; var('capacity_default_daily_volatility') when fewer than 2). -#}
with as_of as (
    select as_of_date from {{ ref('int_as_of') }}
),

trades as (
    select
        fills.portfolio_id,
        fills.symbol,
        percentile_cont(0.5) within group (order by fills.price * fills.quantity) as typical_trade_usd,
        count(*) as trades
    from {{ ref('stg_ledger__leader_fills') }} as fills
    cross join as_of
    where fills.traded_on > as_of.as_of_date - {{ var('capacity_window_days') }}
      and fills.traded_on <= as_of.as_of_date
    group by fills.portfolio_id, fills.symbol
),

bars as (
    select
        market,
        symbol,
        price_date,
        quote_volume_usd,
        ln({{ to_double('close_price') }}) - ln({{ to_double('lag(close_price) over (partition by market, symbol order by price_date)') }}) as log_change
    from {{ ref('int_mark_daily_closes') }}
),

markets as (
    select
        bars.market,
        bars.symbol,
        avg(bars.quote_volume_usd) as daily_volume_usd,
        coalesce(stddev_samp(bars.log_change), {{ var('capacity_default_daily_volatility') }}) as daily_volatility
    from bars
    cross join as_of
    where bars.price_date > as_of.as_of_date - {{ var('capacity_window_days') }}
      and bars.price_date <= as_of.as_of_date
    group by bars.market, bars.symbol
),

equity as (
    select metrics.portfolio_id, metrics.equity_usd, metrics.aum_usd - metrics.equity_usd as copy_equity_usd
    from {{ ref('leader_metrics') }} as metrics
    inner join as_of on metrics.metric_date = as_of.as_of_date
    where metrics.period = 'all'
),

per_market as (
    select
        trades.portfolio_id,
        trades.symbol,
        trades.trades,
        trades.typical_trade_usd,
        markets.daily_volume_usd,
        markets.daily_volatility,
        {{ to_double('markets.daily_volume_usd') }}
            * power({{ var('capacity_slippage_limit') }} / nullif(markets.daily_volatility, 0), 2) as max_order_usd,
        equity.equity_usd,
        equity.copy_equity_usd
    from trades
    inner join {{ ref('int_book_markets') }} as books
        on books.book_type = 'leader' and trades.portfolio_id = books.book_id
    inner join markets on books.market = markets.market and trades.symbol = markets.symbol
    inner join equity on trades.portfolio_id = equity.portfolio_id
),

absorbable as (
    select
        per_market.*,
        {{ to_double('equity_usd') }} * ({{ ratio('max_order_usd', 'typical_trade_usd') }} - 1) as absorbable_usd,
        row_number() over (
            partition by portfolio_id
            order by {{ to_double('equity_usd') }} * ({{ ratio('max_order_usd', 'typical_trade_usd') }} - 1), symbol
        ) as binding_rank
    from per_market
)

select
    portfolio_id,
    symbol as binding_symbol,
    trades as binding_symbol_trades,
    typical_trade_usd,
    daily_volume_usd,
    daily_volatility,
    max_order_usd,
    equity_usd,
    copy_equity_usd,
    greatest(absorbable_usd, 0) as capacity_usd,
    greatest(absorbable_usd - {{ to_double('copy_equity_usd') }}, 0) as headroom_usd,
    (select as_of_date from as_of) as as_of_date,
    (select batch_id from {{ ref('int_as_of') }}) as _batch_id
from absorbable
where binding_rank = 1
