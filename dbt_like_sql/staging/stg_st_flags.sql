-- description: ST / *ST status per stock-day (drives the main-board +-5% limit); latest landed file wins.
-- materialized: partitioned
-- unique_key: ts_code, trade_date
WITH
feed AS (
    SELECT * FROM {{ source('raw', 'st_flags') }}
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
    CAST(ts_code AS VARCHAR)        AS ts_code,
    CAST(trade_date AS DATE)        AS trade_date,
    CAST(is_st AS BOOLEAN)          AS is_st,
    CAST(source_file AS VARCHAR)    AS source_file
FROM latest
