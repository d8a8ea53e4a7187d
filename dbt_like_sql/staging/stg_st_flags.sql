-- description: ST / *ST status per stock-day (drives the main-board +-5% limit); latest landed file wins.
-- materialized: partitioned
-- unique_key: ts_code, trade_date
SELECT
    CAST(ts_code AS VARCHAR)        AS ts_code,
    CAST(trade_date AS DATE)        AS trade_date,
    CAST(is_st AS BOOLEAN)          AS is_st,
    CAST(source_file AS VARCHAR)    AS source_file
FROM {{ latest_landed('raw', 'st_flags') }} AS latest
