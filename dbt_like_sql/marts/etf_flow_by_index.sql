-- description: ETF flows per tracked index and day: number of ETFs, ETF assets fd_share x close
--   (CNY) and net inflow = sum of the ETFs' share_change x close (CNY; an ETF without a previous
--   row contributes nothing, n_etfs_with_flow says how many did) -- wave 2's inflows into
--   CSI500/1000 ETFs (METHODS.md §9).
-- materialized: partitioned
-- unique_key: index_code, trade_date
SELECT
    trade_date,
    index_code,
    CAST(count(*) AS INTEGER)               AS n_etfs,
    CAST(count(net_inflow) AS INTEGER)      AS n_etfs_with_flow,
    sum(fd_share * close)                   AS etf_aum,
    coalesce(sum(net_inflow), 0)            AS net_inflow
FROM {{ ref('etf_flow_panel') }}
WHERE trade_date BETWEEN $start AND $end
GROUP BY trade_date, index_code
ORDER BY trade_date, index_code
