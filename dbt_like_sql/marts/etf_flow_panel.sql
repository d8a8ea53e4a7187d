-- description: ETF flows per ETF-day: shares outstanding (units), close (CNY), share change vs the
--   ETF's previous row and net inflow = share_change x close (CNY), with the tracked index. Reads 20
--   sessions of history (lookback 20) to find each ETF's previous row; an ETF whose previous row is
--   older than that (or its first row) has null share_change / net_inflow.
-- materialized: partitioned
-- unique_key: ts_code, trade_date
-- lookback: 20
WITH e AS (
    SELECT
        trade_date,
        ts_code,
        index_code,
        fd_share,
        close,
        fd_share - lag(fd_share) OVER (PARTITION BY ts_code ORDER BY trade_date) AS share_change
    FROM {{ ref('stg_etf_share') }}
    WHERE trade_date BETWEEN $lookback_start AND $end
)
SELECT
    trade_date,
    ts_code,
    index_code,
    fd_share,
    close,
    share_change,
    share_change * close AS net_inflow
FROM e
WHERE trade_date BETWEEN $start AND $end
