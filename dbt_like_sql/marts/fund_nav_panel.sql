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
-- The benchmark session of a NAV row (the last index session on or before the NAV date, as an
-- ASOF join would find it) comes from a running max over one date-ordered stream per index; an
-- equi-join then fetches its close (a null close stays null). Not an ASOF JOIN: over thousands of
-- small daily files DuckDB may estimate the NAV side as tiny and plan the ASOF as a nested loop
-- (42M row pairs on ten years, ~3 s; issue 11); this plan is sorts and hash joins whatever the estimates.
stream AS (
    SELECT index_code AS code, trade_date, trade_date AS ix_date, 0 AS is_nav FROM ix
    UNION ALL
    SELECT DISTINCT benchmark, trade_date, CAST(NULL AS DATE), 1 FROM n WHERE benchmark IS NOT NULL
),
last_session AS (
    SELECT
        code,
        trade_date,
        max(ix_date) OVER (PARTITION BY code ORDER BY trade_date, is_nav ROWS UNBOUNDED PRECEDING) AS ix_date
    FROM stream
    QUALIFY is_nav = 1
),
j AS (
    SELECT
        n.trade_date, n.fund_id, n.name, n.strategy, n.benchmark, n.manager, n.manager_aum_bucket,
        n.adj_nav, ix.close AS bench_close
    FROM n
    LEFT JOIN last_session a ON a.code = n.benchmark AND a.trade_date = n.trade_date
    LEFT JOIN ix ON ix.index_code = a.code AND ix.trade_date = a.ix_date
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
