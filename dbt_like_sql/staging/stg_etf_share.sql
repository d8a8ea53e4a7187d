-- description: ETF shares outstanding in units (10,000 units -> units), ETF close (CNY) and tracked
--   index; latest landed file wins per ETF-day.
-- materialized: partitioned
-- unique_key: ts_code, trade_date
SELECT
    CAST(ts_code AS VARCHAR)            AS ts_code,
    CAST(trade_date AS DATE)            AS trade_date,
    CAST(fd_share AS DOUBLE) * 10000    AS fd_share,  -- ETF shares outstanding in units (raw: 10,000 units)
    CAST(close AS DOUBLE)               AS close,
    CAST(index_code AS VARCHAR)         AS index_code,
    CAST(source_file AS VARCHAR)        AS source_file
FROM {{ latest_landed('raw', 'etf_share') }} AS latest
