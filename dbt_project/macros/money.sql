{#- Exact money from the ledger's integer 1e-8 units: a decimal(38,8), never a float.
    Every amount read from a source goes through this macro (see docs/metrics.md). -#}
{% macro money(column) -%}
    cast(cast({{ column }} as decimal(38, 0)) * 0.00000001 as decimal(38, 8))
{%- endmacro %}

{#- Round a computed amount (e.g. quantity × price) to the ledger's 1e-8 scale. -#}
{% macro round_money(expression) -%}
    cast(round(cast({{ expression }} as decimal(38, 16)), 8) as decimal(38, 8))
{%- endmacro %}

{#- A floating-point ratio of two amounts; null when the denominator is zero or null.
    Ratios (returns, ROI, Sharpe) are statistics, not money, so double precision is fine. -#}
{% macro ratio(numerator, denominator) -%}
    (cast({{ numerator }} as double precision) / nullif(cast({{ denominator }} as double precision), 0))
{%- endmacro %}

{% macro to_double(expression) -%}
    cast({{ expression }} as double precision)
{%- endmacro %}

{#- Exact a × n / d rounded half away from zero to 1e-8, for amounts a and decimals n, d > 0 (a
    share of an amount, an average over days). No double: PostgreSQL's numeric divides exactly;
    DuckDB divides decimals in double, so there it is integer arithmetic on 1e-8 units (HUGEINT:
    a and n below 1e18 units each). -#}
{% macro money_mul_div(amount, numerator, denominator) -%}
    {{ return(adapter.dispatch('money_mul_div')(amount, numerator, denominator)) }}
{%- endmacro %}

{% macro default__money_mul_div(amount, numerator, denominator) -%}
    cast(round(cast({{ amount }} as numeric) * cast({{ numerator }} as numeric) / nullif(cast({{ denominator }} as numeric), 0), 8) as decimal(38, 8))
{%- endmacro %}

{% macro duckdb__money_mul_div(amount, numerator, denominator) -%}
    cast(
        cast(
            sign(cast({{ amount }} as decimal(38, 8)))
            * ((2 * abs(cast(cast({{ amount }} as decimal(38, 8)) * 100000000 as hugeint))
                   * cast(cast({{ numerator }} as decimal(38, 8)) * 100000000 as hugeint)
                + cast(cast({{ denominator }} as decimal(38, 8)) * 100000000 as hugeint))
               // nullif(2 * cast(cast({{ denominator }} as decimal(38, 8)) * 100000000 as hugeint), 0))
        as decimal(38, 0)) * 0.00000001
    as decimal(38, 8))
{%- endmacro %}
