-- description: Futures contract reference data: product (IF/IH/IC/IM), multiplier, listing date,
--   expiry (= last trading day, delist_date) and underlying index; latest file wins per contract.
-- materialized: table
-- unique_key: ts_code
SELECT
    CAST(ts_code AS VARCHAR)                AS ts_code,
    upper(CAST(fut_code AS VARCHAR))        AS fut_code,
    CAST(multiplier AS DOUBLE)              AS multiplier,
    CAST(list_date AS DATE)                 AS list_date,
    CAST(delist_date AS DATE)               AS expiry_date,
    CAST(underlying AS VARCHAR)             AS underlying,
    CAST(source_file AS VARCHAR)            AS source_file
FROM {{ source('raw', 'fut_basic') }}
QUALIFY row_number() OVER (
    PARTITION BY ts_code ORDER BY source_mtime_ns DESC, source_file DESC, source_line DESC
) = 1
