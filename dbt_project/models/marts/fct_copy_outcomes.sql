{{ config(
    materialized='incremental',
    unique_key=['intent_id'],
    incremental_strategy='delete+insert',
) }}
{#- One row per follower order intent with its final outcome (R-COPY-7), the slippage of its
    fills (quantity-weighted, bps, + is worse for the follower, R-COPY-8) and the copy delay
    (leader fill → follower ack, the engine's copy_delay_ms of the first fill). Only grows. -#}
with intents as (
    select * from {{ ref('stg_ledger__follower_order_intents') }}
    {% if is_incremental() %}
    where _batch_id > {{ last_batch() }}
    {% endif %}
),

fills as (
    select
        order_id,
        copy_id,
        leader_fill_id,
        sum(quantity) as filled_quantity,
        sum(slippage_bps * quantity) as slippage_weight,
        sum(case when slippage_bps is not null then quantity else 0 end) as slippage_quantity,
        min(copy_delay_ms) as copy_delay_ms,
        sum(fee_usd) as fees_usd
    from {{ ref('stg_ledger__follower_fills') }}
    group by order_id, copy_id, leader_fill_id
),

orders_by_intent as (
    -- follower_orders are not extracted; an intent's fills are those of its copy and leader fill
    select copy_id, leader_fill_id, sum(filled_quantity) as filled_quantity,
        sum(slippage_weight) as slippage_weight, sum(slippage_quantity) as slippage_quantity,
        min(copy_delay_ms) as copy_delay_ms, sum(fees_usd) as fees_usd
    from fills
    group by copy_id, leader_fill_id
),

copies as (
    select copy_id, portfolio_id from {{ ref('stg_ledger__copies') }}
)

select
    intents.intent_id,
    intents.copy_id,
    copies.portfolio_id,
    intents.leader_fill_id,
    intents.intent_kind,
    intents.symbol,
    intents.side,
    intents.outcome,
    intents.reason,
    intents.outcome in ('filled', 'partially_filled') as is_copied,
    intents.outcome = 'skipped' as is_skipped,
    intents.outcome = 'rejected' as is_rejected,
    coalesce(orders_by_intent.filled_quantity, 0) as filled_quantity,
    {{ ratio('orders_by_intent.slippage_weight', 'orders_by_intent.slippage_quantity') }} as slippage_bps,
    orders_by_intent.copy_delay_ms,
    coalesce(orders_by_intent.fees_usd, 0) as fees_usd,
    intents.created_at,
    intents.created_on,
    intents._batch_id
from intents
inner join copies on intents.copy_id = copies.copy_id
left join orders_by_intent
    on intents.copy_id = orders_by_intent.copy_id
    and intents.leader_fill_id = orders_by_intent.leader_fill_id
    and intents.outcome in ('filled', 'partially_filled')
