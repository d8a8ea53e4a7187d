-- description: Index constituent weights as FRACTIONS (percent / 100, summing to ~1 per index and
--   date); latest landed file wins per (index, constituent, date).
-- materialized: partitioned
-- unique_key: index_code, con_code, trade_date
WITH
feed AS (
    SELECT * FROM {{ source('raw', 'index_weight') }}
    WHERE trade_date BETWEEN $start AND $end
),
redelivered AS (
    -- keys landed in more than one row (a re-delivered file): only these are ranked
    SELECT index_code, con_code, trade_date FROM feed GROUP BY index_code, con_code, trade_date HAVING count(*) > 1
),
latest AS (
    -- one row per key, the latest landed: keys landed once pass through, the others keep their
    -- first row by (source_mtime_ns, source_file, source_line) descending (a window over every
    -- row cost ~35% more SQL time at full market, issue 11)
    SELECT f.* FROM feed f ANTI JOIN redelivered r
        ON f.index_code IS NOT DISTINCT FROM r.index_code
       AND f.con_code IS NOT DISTINCT FROM r.con_code
       AND f.trade_date IS NOT DISTINCT FROM r.trade_date
    UNION ALL
    (SELECT f.* FROM feed f SEMI JOIN redelivered r
        ON f.index_code IS NOT DISTINCT FROM r.index_code
       AND f.con_code IS NOT DISTINCT FROM r.con_code
       AND f.trade_date IS NOT DISTINCT FROM r.trade_date
     QUALIFY row_number() OVER (
         PARTITION BY index_code, con_code, trade_date
         ORDER BY source_mtime_ns DESC, source_file DESC, source_line DESC
     ) = 1)
)
SELECT
    CAST(index_code AS VARCHAR)         AS index_code,
    CAST(con_code AS VARCHAR)           AS con_code,
    CAST(trade_date AS DATE)            AS trade_date,
    CAST(weight AS DOUBLE) / 100        AS weight,    -- constituent weight as a fraction (raw: percent)
    CAST(source_file AS VARCHAR)        AS source_file
FROM latest
