-- description: Daily unadjusted stock bars in canonical units (vol in shares, amount in CNY),
--   one row per stock-day: the row from the latest landed file wins (source_mtime_ns, then file name).
-- materialized: partitioned
-- unique_key: ts_code, trade_date
SELECT
    CAST(ts_code AS VARCHAR)            AS ts_code,
    CAST(trade_date AS DATE)            AS trade_date,
    CAST(open AS DOUBLE)                AS open,
    CAST(high AS DOUBLE)                AS high,
    CAST(low AS DOUBLE)                 AS low,
    CAST(close AS DOUBLE)               AS close,
    CAST(pre_close AS DOUBLE)           AS pre_close,
    CAST(vol AS DOUBLE) * 100           AS vol,       -- volume in shares (raw: lots of 100 shares)
    CAST(amount AS DOUBLE) * 1000       AS amount,    -- traded amount in CNY (raw: 1,000 CNY)
    CAST(source_file AS VARCHAR)        AS source_file
FROM {{ latest_landed('raw', 'stock_daily') }} AS latest
