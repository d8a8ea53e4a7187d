-- description: Index closes and simple returns (close / pre_close - 1) per index-day, with traded
--   amount in CNY: CSI300/500/1000/2000, SSE50, micro-cap and any other index in the feed.
-- materialized: partitioned
-- unique_key: index_code, trade_date
SELECT
    trade_date,
    ts_code                     AS index_code,
    close,
    pre_close,
    close / pre_close - 1       AS ret,
    amount,
    open,
    high,
    low,
    vol
FROM {{ ref('stg_index_daily') }}
WHERE trade_date BETWEEN $start AND $end
