-- description: ST / *ST status per stock-day (drives the main-board +-5% limit); latest landed file wins.
-- materialized: partitioned
-- unique_key: ts_code, trade_date
SELECT
    CAST(ts_code AS VARCHAR)        AS ts_code,
    CAST(trade_date AS DATE)        AS trade_date,
    CAST(is_st AS BOOLEAN)          AS is_st,
    CAST(source_file AS VARCHAR)    AS source_file
FROM {{ source('raw', 'st_flags') }}
WHERE trade_date BETWEEN $start AND $end
QUALIFY row_number() OVER (
    PARTITION BY ts_code, trade_date
    ORDER BY source_mtime_ns DESC, source_file DESC, source_line DESC
) = 1
