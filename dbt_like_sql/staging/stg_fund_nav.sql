-- description: Weekly adjusted NAVs of private quant products (trade_date = nav_date), strategy
--   labels lower-cased; latest landed file wins per (fund, NAV date).
-- materialized: partitioned
-- unique_key: fund_id, trade_date
SELECT
    CAST(fund_id AS VARCHAR)                    AS fund_id,
    CAST(trade_date AS DATE)                    AS trade_date,
    CAST(nav_date AS DATE)                      AS nav_date,
    CAST(name AS VARCHAR)                       AS name,
    lower(trim(CAST(strategy AS VARCHAR)))      AS strategy,
    NULLIF(trim(CAST(benchmark AS VARCHAR)), '') AS benchmark,
    CAST(manager AS VARCHAR)                    AS manager,
    CAST(manager_aum_bucket AS VARCHAR)         AS manager_aum_bucket,
    CAST(adj_nav AS DOUBLE)                     AS adj_nav,
    CAST(source_file AS VARCHAR)                AS source_file
FROM {{ latest_landed('raw', 'fund_nav') }} AS latest
