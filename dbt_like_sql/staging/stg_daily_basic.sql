-- description: Daily share counts, market caps and turnover in canonical units: shares, CNY and
--   turnover as a FRACTION of float / free-float shares; latest landed file wins per stock-day.
-- materialized: partitioned
-- unique_key: ts_code, trade_date
SELECT
    CAST(ts_code AS VARCHAR)                    AS ts_code,
    CAST(trade_date AS DATE)                    AS trade_date,
    CAST(close AS DOUBLE)                       AS close,
    CAST(turnover_rate AS DOUBLE) / 100         AS turnover,      -- percent -> fraction of float shares
    CAST(turnover_rate_f AS DOUBLE) / 100       AS turnover_f,    -- percent -> fraction of free float
    CAST(total_share AS DOUBLE) * 10000         AS total_share,   -- 10,000 shares -> shares
    CAST(float_share AS DOUBLE) * 10000         AS float_share,
    CAST(free_share AS DOUBLE) * 10000          AS free_share,
    CAST(total_mv AS DOUBLE) * 10000            AS total_mv,      -- 10,000 CNY -> CNY
    CAST(circ_mv AS DOUBLE) * 10000             AS circ_mv,
    CAST(source_file AS VARCHAR)                AS source_file
FROM {{ source('raw', 'daily_basic') }}
WHERE trade_date BETWEEN $start AND $end
QUALIFY row_number() OVER (
    PARTITION BY ts_code, trade_date
    ORDER BY source_mtime_ns DESC, source_file DESC, source_line DESC
) = 1
