{{ config(
    materialized='incremental',
    unique_key=['book_type', 'book_id', 'symbol', 'position_side', 'traded_on'],
    incremental_strategy='delete+insert',
) }}
{#- One row per position (book, symbol, position side) and UTC day with fills: the position Q
    and average-cost basis B at the end of the day (docs/metrics.md, "Positions").

    raw position    S = Σ x (x: the day's side quantity)
    hedge-mode sides (long, short) are floored at zero: a reduction larger than the known position
    closed a position opened before our history; the excess X = −min(0, min S) is "prehistory"
    quantity, injected at its cost (price − realised/q for a long, from the day's reducing fills),
    so closing it changes equity by exactly its published realised PnL. 'net' positions are not
    floored.
    position        Q = side sign × (S + X)
    basis           B = Σ (fill basis + injected cost), restarted at 0 whenever a position whose
                    fills all carry a published realised PnL is flat (what is left is rounding).
    Unrealised PnL at a mark M is Q·M − B (int_book_unrealised_daily).

    Incremental: days from the earliest day of new fills are recomputed, continuing from each
    position's last earlier row. -#}
with daily as (
    select * from {{ ref('int_book_fills_daily') }}
),

as_of as (
    select batch_id from {{ ref('int_as_of') }}
),

{% if is_incremental() %}
bounds as (
    select min(traded_on) as start_on from daily where _batch_id > {{ last_batch() }}
),

recent as (
    select daily.* from daily where traded_on >= (select start_on from bounds)
),

touched as (
    select distinct book_type, book_id, symbol, position_side from recent
),

last_before as (
    select t.book_type, t.book_id, t.symbol, t.position_side, max(t.traded_on) as traded_on
    from {{ this }} as t
    inner join touched
        on t.book_type = touched.book_type and t.book_id = touched.book_id
        and t.symbol = touched.symbol and t.position_side = touched.position_side
    where t.traded_on < (select start_on from bounds)
    group by t.book_type, t.book_id, t.symbol, t.position_side
),

carry as (
    select t.*
    from {{ this }} as t
    inner join last_before
        on t.book_type = last_before.book_type and t.book_id = last_before.book_id
        and t.symbol = last_before.symbol and t.position_side = last_before.position_side
        and t.traded_on = last_before.traded_on
),

batch as (
    select
        recent.*,
        coalesce(carry.raw_side_position, 0) as carry_raw,
        coalesce(carry.running_min_position, 0) as carry_min,
        coalesce(carry.raw_basis_usd, 0) as carry_raw_basis,
        coalesce(carry.episode, 0) as carry_episode,
        coalesce(carry.basis_base_usd, 0) as carry_base,
        coalesce(carry.unpublished_to_date, 0) as carry_unpublished
    from recent
    left join carry
        on recent.book_type = carry.book_type and recent.book_id = carry.book_id
        and recent.symbol = carry.symbol and recent.position_side = carry.position_side
),
{% else %}
batch as (
    select
        daily.*,
        0 as carry_raw,
        0 as carry_min,
        0 as carry_raw_basis,
        0 as carry_episode,
        0 as carry_base,
        0 as carry_unpublished
    from daily
),
{% endif %}

-- A position is (book type, book id, symbol, position side). The window passes below partition
-- by (book_id, position_key), two integers, instead of the four columns (three of them strings):
-- sorting 5.8 M position-days on the string keys and carrying them through every pass cost about
-- half of this model's time at the benchmark's scale. position_key numbers the (book type,
-- symbol, position side) combinations of this run, so with book_id it names one position.
position_keys as (
    select
        book_type,
        symbol,
        position_side,
        row_number() over (order by book_type, symbol, position_side) as position_key
    from (select distinct book_type, symbol, position_side from batch) as combinations
),

keyed as (
    select
        position_keys.position_key,
        batch.book_id,
        batch.traded_on,
        batch.position_side in ('long', 'short') as is_hedge,
        batch.side_sign,
        batch.fills,
        batch.side_quantity,
        batch.fill_basis_usd,
        batch.unpublished_fills,
        batch.reduced_quantity,
        batch.reduced_notional_usd,
        batch.reduced_realised_pnl_usd,
        batch.carry_raw,
        batch.carry_min,
        batch.carry_raw_basis,
        batch.carry_episode,
        batch.carry_base,
        batch.carry_unpublished
    from batch
    inner join position_keys
        on batch.book_type = position_keys.book_type and batch.symbol = position_keys.symbol
        and batch.position_side = position_keys.position_side
),

cumulated as (
    select
        keyed.*,
        carry_raw + sum(side_quantity) over position_days as raw_side_position,
        carry_unpublished + sum(unpublished_fills) over position_days as unpublished_to_date
    from keyed
    window position_days as (
        partition by book_id, position_key
        order by traded_on rows between unbounded preceding and current row
    )
),

floored as (
    select
        cumulated.*,
        case when is_hedge
            then least(carry_min, min(raw_side_position) over position_days, 0) else 0
        end as running_min_position,
        case when is_hedge
            then least(carry_min, coalesce(min(raw_side_position) over previous_days, 0), 0) else 0
        end as previous_min_position
    from cumulated
    window
        position_days as (
            partition by book_id, position_key
            order by traded_on rows between unbounded preceding and current row
        ),
        previous_days as (
            partition by book_id, position_key
            order by traded_on rows between unbounded preceding and 1 preceding
        )
),

injected as (
    select
        floored.*,
        -running_min_position as prehistory_quantity,
        previous_min_position - running_min_position as injected_quantity,
        side_sign * (raw_side_position - running_min_position) as position_quantity,
        case
            when previous_min_position = running_min_position then 0
            when previous_min_position - running_min_position = reduced_quantity
                then side_sign * reduced_notional_usd - reduced_realised_pnl_usd
            -- the injected share of the day's reducing cost, exact (no double on money)
            else {{ money_mul_div(
                'side_sign * reduced_notional_usd - reduced_realised_pnl_usd',
                'previous_min_position - running_min_position',
                'reduced_quantity') }}
        end as injected_basis_usd
    from floored
),

flagged as (
    select
        injected.*,
        case when position_quantity = 0 and unpublished_to_date = 0 then 1 else 0 end as is_flat
    from injected
),

accumulated as (
    select
        flagged.*,
        carry_raw_basis + sum(fill_basis_usd + injected_basis_usd) over position_days as raw_basis_usd,
        carry_episode + sum(is_flat) over position_days as episode
    from flagged
    window position_days as (
        partition by book_id, position_key
        order by traded_on rows between unbounded preceding and current row
    )
),

flat_days as (
    -- each episode starts with the flat day that opened it (at most one per position and episode)
    select book_id, position_key, episode, raw_basis_usd as flat_basis_usd
    from accumulated
    where is_flat = 1
),

based as (
    select
        accumulated.*,
        -- a flat, fully published position closes its basis: later rows measure from that day
        coalesce(flat_days.flat_basis_usd, accumulated.carry_base) as basis_base_usd
    from accumulated
    left join flat_days
        on accumulated.book_id = flat_days.book_id and accumulated.position_key = flat_days.position_key
        and accumulated.episode = flat_days.episode
)

select
    position_keys.book_type,
    based.book_id,
    position_keys.symbol,
    position_keys.position_side,
    based.traded_on,
    based.fills,
    based.side_quantity,
    based.raw_side_position,
    based.running_min_position,
    based.prehistory_quantity,
    based.injected_quantity,
    based.position_quantity,
    based.fill_basis_usd,
    based.injected_basis_usd,
    based.raw_basis_usd,
    based.episode,
    based.basis_base_usd,
    based.raw_basis_usd - based.basis_base_usd as basis_usd,
    based.unpublished_to_date,
    (select batch_id from as_of) as _batch_id
from based
inner join position_keys on based.position_key = position_keys.position_key
