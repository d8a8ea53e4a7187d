-- description: Cumulative price adjustment factor per stock-day (adjusted close = close x adj_factor);
--   latest landed file wins.
-- materialized: partitioned
-- unique_key: ts_code, trade_date
SELECT
    CAST(ts_code AS VARCHAR)        AS ts_code,
    CAST(trade_date AS DATE)        AS trade_date,
    CAST(adj_factor AS DOUBLE)      AS adj_factor,
    CAST(source_file AS VARCHAR)    AS source_file
FROM {{ source('raw', 'adj_factor') }}
WHERE trade_date BETWEEN $start AND $end
QUALIFY row_number() OVER (
    PARTITION BY ts_code, trade_date
    ORDER BY source_mtime_ns DESC, source_file DESC, source_line DESC
) = 1
