-- description: Daily share counts, market caps and turnover in canonical units: shares, CNY and
--   turnover as a FRACTION of float / free-float shares; latest landed file wins per stock-day.
-- materialized: partitioned
-- unique_key: ts_code, trade_date
SELECT
    CAST(ts_code AS VARCHAR)                    AS ts_code,
    CAST(trade_date AS DATE)                    AS trade_date,
    CAST(close AS DOUBLE)                       AS close,
    CAST(turnover_rate AS DOUBLE) / 100         AS turnover,      -- turnover as a fraction of float shares (raw: percent)
    CAST(turnover_rate_f AS DOUBLE) / 100       AS turnover_f,    -- turnover as a fraction of free-float shares (raw: percent)
    CAST(total_share AS DOUBLE) * 10000         AS total_share,   -- total shares (raw: 10,000 shares)
    CAST(float_share AS DOUBLE) * 10000         AS float_share,   -- float (circulating) shares (raw: 10,000 shares)
    CAST(free_share AS DOUBLE) * 10000          AS free_share,    -- free-float shares (raw: 10,000 shares)
    CAST(total_mv AS DOUBLE) * 10000            AS total_mv,      -- total market cap in CNY, vendor's (raw: 10,000 CNY)
    CAST(circ_mv AS DOUBLE) * 10000             AS circ_mv,       -- float market cap in CNY, vendor's (raw: 10,000 CNY)
    CAST(source_file AS VARCHAR)                AS source_file
FROM {{ latest_landed('raw', 'daily_basic') }} AS latest
