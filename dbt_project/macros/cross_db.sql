{#- One row per day from start to end (inclusive) when used in a select list: a set-returning
    expression on PostgreSQL, an unnested list on DuckDB. -#}
{% macro days_from_to(start_date, end_date) -%}
    {{ return(adapter.dispatch('days_from_to', 'copytrade')(start_date, end_date)) }}
{%- endmacro %}

{% macro default__days_from_to(start_date, end_date) -%}
    cast(generate_series(cast({{ start_date }} as timestamp), cast({{ end_date }} as timestamp), interval '1 day') as date)
{%- endmacro %}

{% macro duckdb__days_from_to(start_date, end_date) -%}
    cast(unnest(generate_series(cast({{ start_date }} as timestamp), cast({{ end_date }} as timestamp), interval 1 day)) as date)
{%- endmacro %}

{#- The value of a var as a SQL list of string literals. -#}
{% macro sql_string_list(values) -%}
    {%- for v in values -%}'{{ v }}'{{ ", " if not loop.last }}{%- endfor -%}
{%- endmacro %}

{#- Natural log of a growth factor, guarded: a day that loses everything (1 + r ≤ 0) is floored
    at 1e-12 so the NAV index stays defined. -#}
{% macro log_growth(daily_return) -%}
    ln(greatest(1 + coalesce({{ daily_return }}, 0), 1e-12))
{%- endmacro %}

{#- The largest _batch_id already in this incremental model (0 when empty). -#}
{% macro last_batch() -%}
    (select coalesce(max(_batch_id), 0) from {{ this }})
{%- endmacro %}

{#- Pre-hook of int_book_unrealised_daily: delete the days an incremental run recomputes, so a day
    on which a book no longer holds a position loses its old row (delete+insert alone only
    replaces the keys it writes). -#}
{% macro clear_unrealised_from_start() %}
    {% if is_incremental() %}
    delete from {{ this }}
    where unrealised_date >= least(
        (select max(unrealised_date) from {{ this }}) + 1 - {{ var('lookback_days') }},
        coalesce(
            (select min(traded_on) from {{ ref('int_book_positions') }}
             where _batch_id > (select coalesce(max(_batch_id), 0) from {{ this }})),
            (select as_of_date from {{ ref('int_as_of') }})
        )
    )
    {% else %}
    select 1
    {% endif %}
{% endmacro %}
