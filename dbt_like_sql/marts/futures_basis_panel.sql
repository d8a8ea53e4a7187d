-- description: Per index-futures contract-day: product, underlying, calendar days to expiry (min 1),
--   spot close (index_daily_panel), basis = close - spot, annualized basis (close / spot - 1) x 365 /
--   days_to_expiry (also on settle), and the main-contract flag (largest open interest per product
--   and day; ties: nearer expiry). Expiry from fut_basic, else the third Friday of the contract month
--   rolled to the next session (METHODS.md §1, §9).
-- materialized: partitioned
-- unique_key: ts_code, trade_date
WITH
f AS (
    SELECT * FROM {{ ref('stg_fut_daily') }} WHERE trade_date BETWEEN $start AND $end
),
coded AS (
    SELECT
        f.*,
        coalesce(b.fut_code, regexp_extract(f.ts_code, '^([A-Z]+)', 1))        AS fut_code_,
        b.underlying                                                              AS underlying_b,
        b.multiplier,
        b.expiry_date                                                             AS expiry_b,
        -- third Friday of the contract month (code IC2401 -> 2024-01)
        make_date(2000 + CAST(regexp_extract(f.ts_code, '^[A-Z]+([0-9]{2})', 1) AS INTEGER),
                  CAST(regexp_extract(f.ts_code, '^[A-Z]+[0-9]{2}([0-9]{2})', 1) AS INTEGER), 1) AS month_start
    FROM f
    LEFT JOIN {{ ref('stg_fut_basic') }} b USING (ts_code)
),
expiry AS (
    SELECT
        coded.*,
        CAST(month_start + INTERVAL (((5 - isodow(month_start) + 7) % 7) + 14) DAY AS DATE) AS third_friday
    FROM coded
),
rolled AS (
    SELECT e.*, c.trade_date AS third_friday_session
    FROM expiry e
    ASOF LEFT JOIN calendar c ON e.third_friday <= c.trade_date
),
j AS (
    SELECT
        trade_date,
        ts_code,
        fut_code_                                                        AS fut_code,
        coalesce(underlying_b, CASE fut_code_
            WHEN 'IF' THEN '000300.SH' WHEN 'IH' THEN '000016.SH'
            WHEN 'IC' THEN '000905.SH' WHEN 'IM' THEN '000852.SH' END)   AS underlying,
        multiplier,
        close, settle, pre_settle, vol, oi, amount,
        coalesce(expiry_b, third_friday_session)                         AS expiry_date
    FROM rolled
)
SELECT
    j.trade_date,
    j.ts_code,
    j.fut_code,
    j.underlying,
    j.close,
    j.settle,
    j.vol,
    j.oi,
    j.amount,
    j.expiry_date,
    CAST(greatest(date_diff('day', j.trade_date, j.expiry_date), 1) AS INTEGER)          AS days_to_expiry,
    i.close                                                                               AS spot_close,
    j.close - i.close                                                                     AS basis,
    (j.close / i.close - 1) * 365 / greatest(date_diff('day', j.trade_date, j.expiry_date), 1)  AS basis_ann,
    (j.settle / i.close - 1) * 365 / greatest(date_diff('day', j.trade_date, j.expiry_date), 1) AS basis_ann_settle,
    row_number() OVER (
        PARTITION BY j.trade_date, j.fut_code
        ORDER BY j.oi DESC NULLS LAST, j.expiry_date ASC, j.ts_code
    ) = 1                                                                                 AS is_main,
    j.multiplier,
    j.pre_settle
FROM j
LEFT JOIN {{ ref('index_daily_panel') }} i
       ON i.index_code = j.underlying AND i.trade_date = j.trade_date
