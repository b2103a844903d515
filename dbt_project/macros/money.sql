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
