-- description: Index constituent weights as FRACTIONS (percent / 100, summing to ~1 per index and
--   date); latest landed file wins per (index, constituent, date).
-- materialized: partitioned
-- unique_key: index_code, con_code, trade_date
SELECT
    CAST(index_code AS VARCHAR)         AS index_code,
    CAST(con_code AS VARCHAR)           AS con_code,
    CAST(trade_date AS DATE)            AS trade_date,
    CAST(weight AS DOUBLE) / 100        AS weight,    -- constituent weight as a fraction (raw: percent)
    CAST(source_file AS VARCHAR)        AS source_file
FROM {{ latest_landed('raw', 'index_weight') }} AS latest
