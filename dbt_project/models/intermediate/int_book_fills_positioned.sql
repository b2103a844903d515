{{ config(
    materialized='incremental',
    unique_key=['book_type', 'fill_id'],
    incremental_strategy='delete+insert',
) }}
{#- Each fill with the book's position and cost basis after it, per position
    (book, symbol, position side). Formulas (docs/metrics.md, "Positions"):

    side quantity   x = +q for a fill that opens on its side (long: buy, short: sell), −q otherwise
    raw position    S = Σ x (carried in from earlier runs)
    hedge-mode sides are floored at zero: a close larger than the known position closed a position
    opened before our history; the excess X = −min(0, min S) is "prehistory" quantity injected at
    the fill's cost (price − realised/q for a long), so such a close changes equity by exactly its
    published realised PnL. One-way ('net') positions are not floored.
    position        Q = side sign × (S + X)
    basis change    ΔB = q·p (signed) + realised PnL + injected prehistory cost
    cost basis      B = Σ ΔB, restarted at 0 whenever a fully published position is flat;
    unrealised PnL at mark M is Q·M − B (average cost, which is how the exchange publishes it).

    Incremental: new fills (by _batch_id) continue their position from its last stored row; a
    position that receives a fill older than its last stored one is recomputed whole. -#}
with fills as (
    select * from {{ ref('int_book_fills_unioned') }}
),

{% if is_incremental() %}
new_fills as (
    select * from fills where _batch_id > {{ last_batch() }}
),

touched as (
    select book_type, book_id, symbol, position_side, min(traded_at) as first_new_at
    from new_fills
    group by book_type, book_id, symbol, position_side
),

last_rows as (
    select * from (
        select
            t.*,
            row_number() over (
                partition by t.book_type, t.book_id, t.symbol, t.position_side
                order by t.traded_at desc, t.fill_id desc
            ) as recency
        from {{ this }} as t
        inner join touched
            on t.book_type = touched.book_type and t.book_id = touched.book_id
            and t.symbol = touched.symbol and t.position_side = touched.position_side
    ) as ranked
    where recency = 1
),

decisions as (
    select
        touched.book_type, touched.book_id, touched.symbol, touched.position_side,
        case
            when last_rows.fill_id is null then 'fresh'
            when touched.first_new_at < last_rows.traded_at then 'rebuild'
            else 'append'
        end as mode,
        coalesce(last_rows.raw_side_position, 0) as carry_raw,
        coalesce(last_rows.running_min_position, 0) as carry_min,
        coalesce(last_rows.prehistory_quantity, 0) as carry_prehistory,
        coalesce(last_rows.position_quantity, 0) as carry_position,
        coalesce(last_rows.basis_usd, 0) as carry_basis,
        coalesce(last_rows.unpublished_fills, 0) as carry_unpublished
    from touched
    left join last_rows
        on touched.book_type = last_rows.book_type and touched.book_id = last_rows.book_id
        and touched.symbol = last_rows.symbol and touched.position_side = last_rows.position_side
),

batch as (
    select new_fills.*, d.carry_raw, d.carry_min, d.carry_prehistory, d.carry_position, d.carry_basis, d.carry_unpublished
    from new_fills
    inner join decisions as d
        on new_fills.book_type = d.book_type and new_fills.book_id = d.book_id
        and new_fills.symbol = d.symbol and new_fills.position_side = d.position_side
    where d.mode = 'append'

    union all

    select fills.*, 0, 0, 0, 0, 0, 0
    from fills
    inner join decisions as d
        on fills.book_type = d.book_type and fills.book_id = d.book_id
        and fills.symbol = d.symbol and fills.position_side = d.position_side
    where d.mode in ('fresh', 'rebuild')
),
{% else %}
batch as (
    select fills.*, 0 as carry_raw, 0 as carry_min, 0 as carry_prehistory, 0 as carry_position,
        0 as carry_basis, 0 as carry_unpublished
    from fills
),
{% endif %}

signed as (
    select
        batch.*,
        case when position_side = 'short' then -1 else 1 end as side_sign,
        case when position_side = 'short' then -signed_quantity else signed_quantity end as side_quantity,
        case when has_published_pnl then 0 else 1 end as is_unpublished
    from batch
),

raw_positions as (
    select
        signed.*,
        carry_raw + sum(side_quantity) over position_window as raw_side_position,
        carry_unpublished + sum(is_unpublished) over position_window as unpublished_fills
    from signed
    window position_window as (
        partition by book_type, book_id, symbol, position_side
        order by traded_at, fill_id rows between unbounded preceding and current row
    )
),

floored as (
    select
        raw_positions.*,
        case
            when position_side in ('long', 'short')
                then least(carry_min, min(raw_side_position) over position_window, 0)
            else 0
        end as running_min_position
    from raw_positions
    window position_window as (
        partition by book_type, book_id, symbol, position_side
        order by traded_at, fill_id rows between unbounded preceding and current row
    )
),

injected as (
    select
        floored.*,
        -running_min_position as prehistory_quantity,
        -running_min_position - coalesce(
            lag(-running_min_position) over position_window, carry_prehistory
        ) as injected_quantity,
        side_sign * (raw_side_position - running_min_position) as position_quantity
    from floored
    window position_window as (
        partition by book_type, book_id, symbol, position_side
        order by traded_at, fill_id rows between unbounded preceding and current row
    )
),

based as (
    select
        injected.*,
        signed_quantity * price + realised_pnl_usd
        + case
            when injected_quantity = 0 then 0
            when injected_quantity = quantity then side_sign * quantity * price - realised_pnl_usd
            else side_sign * injected_quantity * price
                - {{ round_money(to_double('realised_pnl_usd') ~ ' * ' ~ ratio('injected_quantity', 'quantity')) }}
        end as fill_basis_usd,
        position_quantity - coalesce(lag(position_quantity) over position_window, carry_position) as position_change
    from injected
    window position_window as (
        partition by book_type, book_id, symbol, position_side
        order by traded_at, fill_id rows between unbounded preceding and current row
    )
),

accumulated as (
    select
        based.*,
        carry_basis + sum(fill_basis_usd) over position_window as running_basis_usd,
        -- a fill that flattens a fully published position closes its cost basis: what is left is
        -- rounding of the published realised PnL, dropped so it cannot leak into the next position
        case when position_quantity = 0 and unpublished_fills = 0 then 1 else 0 end as is_flattening
    from based
    window position_window as (
        partition by book_type, book_id, symbol, position_side
        order by traded_at, fill_id rows between unbounded preceding and current row
    )
),

episodes as (
    select
        accumulated.*,
        sum(is_flattening) over position_window as episode
    from accumulated
    window position_window as (
        partition by book_type, book_id, symbol, position_side
        order by traded_at, fill_id rows between unbounded preceding and current row
    )
),

reset as (
    select
        episodes.*,
        running_basis_usd - sum(case when is_flattening = 1 then running_basis_usd else 0 end) over (
            partition by book_type, book_id, symbol, position_side, episode
        ) as basis_usd
    from episodes
),

final as (
    select
        book_type,
        book_id,
        fill_id,
        symbol,
        position_side,
        side,
        price,
        quantity,
        signed_quantity,
        fee_usd,
        realised_pnl_usd,
        has_published_pnl,
        is_opening,
        raw_side_position,
        running_min_position,
        prehistory_quantity,
        injected_quantity,
        position_quantity,
        position_change,
        basis_usd,
        basis_usd - coalesce(lag(basis_usd) over position_window, carry_basis) as basis_change_usd,
        unpublished_fills,
        traded_at,
        traded_on,
        _batch_id
    from reset
    window position_window as (
        partition by book_type, book_id, symbol, position_side
        order by traded_at, fill_id rows between unbounded preceding and current row
    )
)

select * from final
