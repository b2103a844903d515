{#- Data tests look at the rows with _batch_id above COPYTRADE_TEST_ROWS_AFTER_BATCH: -1 (every
    row) on a first or full build; an incremental build sets the batch before its own extract, so
    each test checks the rows this build wrote (see docs/metrics.md). The `where` configs in
    dbt_project.yml carry the placeholder __tested_after_batch__, replaced here when the test runs:
    a dbt var would change the parse inputs on every build and cost dbt a full re-parse. -#}
{% macro default__get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- if where -%}
        {%- set after_batch = env_var('COPYTRADE_TEST_ROWS_AFTER_BATCH', '-1') if execute else '-1' -%}
        {%- set where = where | replace('__tested_after_batch__', after_batch | int | string) -%}
        {%- do return('(select * from ' ~ relation ~ ' where ' ~ where ~ ') dbt_subquery') -%}
    {%- endif -%}
    {%- do return(relation) -%}
{%- endmacro %}
