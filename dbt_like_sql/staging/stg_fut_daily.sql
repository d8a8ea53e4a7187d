-- description: Daily bars of CFFEX index futures in canonical units (vol and oi in contracts, amount
--   in CNY); latest landed file wins per contract-day.
-- materialized: partitioned
-- unique_key: ts_code, trade_date
SELECT
    CAST(ts_code AS VARCHAR)            AS ts_code,
    CAST(trade_date AS DATE)            AS trade_date,
    CAST(pre_close AS DOUBLE)           AS pre_close,
    CAST(pre_settle AS DOUBLE)          AS pre_settle,
    CAST(open AS DOUBLE)                AS open,
    CAST(high AS DOUBLE)                AS high,
    CAST(low AS DOUBLE)                 AS low,
    CAST(close AS DOUBLE)               AS close,
    CAST(settle AS DOUBLE)              AS settle,
    CAST(vol AS DOUBLE)                 AS vol,       -- volume in contracts
    CAST(amount AS DOUBLE) * 10000      AS amount,    -- traded amount in CNY (raw: 10,000 CNY)
    CAST(oi AS DOUBLE)                  AS oi,        -- open interest in contracts
    CAST(source_file AS VARCHAR)        AS source_file
FROM {{ latest_landed('raw', 'fut_daily') }} AS latest
