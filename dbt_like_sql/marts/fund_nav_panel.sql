-- description: Weekly NAVs of private quant products with fund returns (simple, since the fund's
--   previous NAV row), benchmark closes on the NAV date (last index close on or before it), benchmark
--   returns over the same span (null without a benchmark) and arithmetic excess returns
--   fund_ret - bench_ret (METHODS.md §5). trade_date = nav_date.
-- materialized: table
-- unique_key: fund_id, trade_date
WITH
n AS (
    SELECT * FROM {{ ref('stg_fund_nav') }}
),
ix AS (
    SELECT index_code, trade_date, close FROM {{ ref('index_daily_panel') }}
),
j AS (
    SELECT
        n.trade_date, n.fund_id, n.name, n.strategy, n.benchmark, n.manager, n.manager_aum_bucket,
        n.adj_nav, ix.close AS bench_close
    FROM n
    ASOF LEFT JOIN ix ON n.benchmark = ix.index_code AND n.trade_date >= ix.trade_date
),
r AS (
    SELECT
        *,
        adj_nav / lag(adj_nav) OVER w - 1 AS fund_ret,
        CASE WHEN benchmark IS NOT NULL THEN bench_close / lag(bench_close) OVER w - 1 END AS bench_ret
    FROM j
    WINDOW w AS (PARTITION BY fund_id ORDER BY trade_date)
)
SELECT
    trade_date,
    fund_id,
    name,
    strategy,
    benchmark,
    manager,
    manager_aum_bucket,
    adj_nav,
    fund_ret,
    bench_close,
    bench_ret,
    fund_ret - bench_ret AS excess_ret
FROM r
ORDER BY fund_id, trade_date
