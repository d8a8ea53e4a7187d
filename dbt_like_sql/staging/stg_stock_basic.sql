-- description: Stock reference data: name, SW level-1 industry, board ('main' | 'chinext' | 'star' |
--   'bse', from the market field, else the code pattern), listing and delisting dates; latest file
--   wins per stock.
-- materialized: table
-- unique_key: ts_code
WITH latest AS (
    SELECT *
    FROM {{ source('raw', 'stock_basic') }}
    QUALIFY row_number() OVER (
        PARTITION BY ts_code ORDER BY source_mtime_ns DESC, source_file DESC, source_line DESC
    ) = 1
)
SELECT
    CAST(ts_code AS VARCHAR)            AS ts_code,
    CAST(name AS VARCHAR)               AS name,
    CAST(industry AS VARCHAR)           AS industry,
    CAST(market AS VARCHAR)             AS market,
    CASE
        WHEN lower(trim(market)) IN ('main', '主板', '中小板', 'main board') THEN 'main'
        WHEN lower(trim(market)) IN ('chinext', '创业板', 'gem') THEN 'chinext'
        WHEN lower(trim(market)) IN ('star', '科创板') THEN 'star'
        WHEN lower(trim(market)) IN ('bse', '北交所', 'beijing') THEN 'bse'
        -- code pattern (METHODS.md §1): 688/689 STAR, 300/301 ChiNext, 43/83/87/92 Beijing
        WHEN ts_code LIKE '688%' OR ts_code LIKE '689%' THEN 'star'
        WHEN ts_code LIKE '300%' OR ts_code LIKE '301%' THEN 'chinext'
        WHEN ts_code LIKE '%.BJ' THEN 'bse'
        ELSE 'main'
    END                                 AS board,
    CAST(list_date AS DATE)             AS list_date,
    CAST(delist_date AS DATE)           AS delist_date,
    CAST(source_file AS VARCHAR)        AS source_file
FROM latest
