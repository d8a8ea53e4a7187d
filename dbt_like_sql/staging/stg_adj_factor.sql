-- description: Cumulative price adjustment factor per stock-day (adjusted close = close x adj_factor);
--   latest landed file wins.
-- materialized: partitioned
-- unique_key: ts_code, trade_date
SELECT
    CAST(ts_code AS VARCHAR)        AS ts_code,
    CAST(trade_date AS DATE)        AS trade_date,
    CAST(adj_factor AS DOUBLE)      AS adj_factor,
    CAST(source_file AS VARCHAR)    AS source_file
FROM {{ latest_landed('raw', 'adj_factor') }} AS latest
