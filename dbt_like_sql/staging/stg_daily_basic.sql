-- description: Daily share counts, market caps and turnover in canonical units: shares, CNY and
--   turnover as a FRACTION of float / free-float shares; latest landed file wins per stock-day.
-- materialized: partitioned
-- unique_key: ts_code, trade_date
WITH
feed AS (
    SELECT * FROM {{ source('raw', 'daily_basic') }}
    WHERE trade_date BETWEEN $start AND $end
),
redelivered AS (
    -- keys landed in more than one row (a re-delivered file): only these are ranked
    SELECT ts_code, trade_date FROM feed GROUP BY ts_code, trade_date HAVING count(*) > 1
),
latest AS (
    -- one row per key, the latest landed: keys landed once pass through, the others keep their
    -- first row by (source_mtime_ns, source_file, source_line) descending (a window over every
    -- row cost ~35% more SQL time at full market, issue 11)
    SELECT f.* FROM feed f ANTI JOIN redelivered r
        ON f.ts_code IS NOT DISTINCT FROM r.ts_code
       AND f.trade_date IS NOT DISTINCT FROM r.trade_date
    UNION ALL
    (SELECT f.* FROM feed f SEMI JOIN redelivered r
        ON f.ts_code IS NOT DISTINCT FROM r.ts_code
       AND f.trade_date IS NOT DISTINCT FROM r.trade_date
     QUALIFY row_number() OVER (
         PARTITION BY ts_code, trade_date
         ORDER BY source_mtime_ns DESC, source_file DESC, source_line DESC
     ) = 1)
)
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
FROM latest
