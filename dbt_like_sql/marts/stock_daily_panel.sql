-- description: One row per listed stock per trading day (suspended stocks included with
--   is_suspended = true and null prices, volume and caps): unadjusted OHLC, adjusted close, simple
--   return close/pre_close - 1, volume (shares), amount (CNY), turnover (fractions), share counts,
--   total / float / free-float caps (close x shares, CNY), board, SW industry, ST flag, and the
--   board-specific price limits with limit-up / limit-down / locked flags (METHODS.md §1). Reads one
--   extra session of history (lookback 1) to flag resumption days (is_resumption).
-- materialized: partitioned
-- unique_key: ts_code, trade_date
-- lookback: 1
WITH
days AS (
    SELECT trade_date, session_idx
    FROM calendar
    WHERE trade_date BETWEEN $lookback_start AND $end
),
first_session AS (
    SELECT min(trade_date) AS d FROM calendar
),
basic AS (
    -- list_idx: session index of the listing day (first session on/after list_date). A listing
    -- before the first session of the calendar (2015-01-05) counts the weekdays before it
    -- (approximation: only the first-five-days rule needs it exactly).
    SELECT
        b.ts_code, b.name, b.industry, b.board, b.list_date, b.delist_date,
        CASE
            WHEN b.list_date < f.d THEN -CAST(date_diff('day', b.list_date, f.d) * 5 // 7 AS BIGINT)
            ELSE c.session_idx
        END AS list_idx
    FROM {{ ref('stg_stock_basic') }} b
    CROSS JOIN first_session f
    ASOF LEFT JOIN calendar c ON b.list_date <= c.trade_date
),
bars AS (
    SELECT ts_code, trade_date, open, high, low, close, pre_close, vol, amount
    FROM {{ ref('stg_stock_daily') }}
    WHERE trade_date BETWEEN $lookback_start AND $end
),
bar_days AS (
    SELECT trade_date, count(*) AS n_bars FROM bars GROUP BY trade_date
),
listed AS (
    SELECT d.trade_date, b.ts_code
    FROM days d
    JOIN basic b
      ON b.list_date <= d.trade_date
     AND (b.delist_date IS NULL OR d.trade_date < b.delist_date)
),
universe AS (
    -- listed by the reference data, plus any stock with a bar (no survivorship by omission); one
    -- row per stock-session of [$lookback_start, $end] with the bar of that day if any
    SELECT
        trade_date,
        d.session_idx,
        ts_code,
        s.open, s.high, s.low, s.close, s.pre_close, s.vol, s.amount,
        (s.ts_code IS NULL OR coalesce(s.vol, 0) <= 0)          AS is_suspended,
        coalesce(bd.n_bars, 0) > 0                              AS day_has_bars
    FROM listed l
    FULL JOIN bars s USING (ts_code, trade_date)
    JOIN days d USING (trade_date)
    LEFT JOIN bar_days bd USING (trade_date)
),
resumable AS (
    -- the session after each suspended stock-session (the lookback session is read only for
    -- this); a suspension is known only on a session that had bars at all. A hash join on
    -- these few rows instead of a window over every stock-session (issue 11)
    SELECT DISTINCT ts_code, session_idx + 1 AS session_idx
    FROM universe
    WHERE day_has_bars AND is_suspended
),
joined AS (
    SELECT
        u.trade_date,
        u.session_idx,
        u.ts_code,
        b.name,
        b.industry,
        coalesce(b.board, CASE
            WHEN u.ts_code LIKE '688%' OR u.ts_code LIKE '689%' THEN 'star'
            WHEN u.ts_code LIKE '300%' OR u.ts_code LIKE '301%' THEN 'chinext'
            WHEN u.ts_code LIKE '%.BJ' THEN 'bse'
            ELSE 'main' END)                                    AS board,
        coalesce(st.is_st, false)                               AS is_st,
        b.list_date,
        CAST(u.session_idx - b.list_idx + 1 AS INTEGER)         AS days_listed,
        u.is_suspended,
        u.open, u.high, u.low, u.close, u.pre_close, u.vol, u.amount,
        a.adj_factor,
        db.turnover, db.turnover_f, db.total_share, db.float_share, db.free_share,
        r.ts_code IS NOT NULL                                   AS prev_suspended
    FROM universe u
    LEFT JOIN resumable r ON r.ts_code = u.ts_code AND r.session_idx = u.session_idx
    LEFT JOIN basic b ON b.ts_code = u.ts_code
    LEFT JOIN (
        SELECT ts_code, trade_date, adj_factor
        FROM {{ ref('stg_adj_factor') }} WHERE trade_date BETWEEN $start AND $end
    ) a ON a.ts_code = u.ts_code AND a.trade_date = u.trade_date
    LEFT JOIN (
        SELECT ts_code, trade_date, turnover, turnover_f, total_share, float_share, free_share
        FROM {{ ref('stg_daily_basic') }} WHERE trade_date BETWEEN $start AND $end
    ) db ON db.ts_code = u.ts_code AND db.trade_date = u.trade_date
    LEFT JOIN (
        -- the ST stock-days only (is_st is false on every other row): a hash table of a few
        -- percent of the stock-days instead of all of them (issue 11)
        SELECT ts_code, trade_date, is_st
        FROM {{ ref('stg_st_flags') }} WHERE trade_date BETWEEN $start AND $end AND is_st
    ) st ON st.ts_code = u.ts_code AND st.trade_date = u.trade_date
    WHERE u.trade_date BETWEEN $start AND $end
),
limits AS (
    SELECT
        *,
        -- (up, down) limit fractions by board and listing age (METHODS.md §1); NULL = no limit
        CASE
            WHEN days_listed <= 5 AND (
                   (board = 'chinext' AND list_date >= DATE '2020-08-24')
                OR board IN ('star', 'bse')
                OR (board = 'main' AND list_date >= DATE '2023-04-10')) THEN NULL
            WHEN days_listed = 1 AND board IN ('main', 'chinext') THEN 0.44
            WHEN is_st AND (board = 'main' OR (board = 'chinext' AND trade_date < DATE '2020-08-24')) THEN 0.05
            WHEN board = 'chinext' AND trade_date >= DATE '2020-08-24' THEN 0.20
            WHEN board = 'star' THEN 0.20
            WHEN board = 'bse' THEN 0.30
            ELSE 0.10
        END AS up_pct,
        CASE
            WHEN days_listed <= 5 AND (
                   (board = 'chinext' AND list_date >= DATE '2020-08-24')
                OR board IN ('star', 'bse')
                OR (board = 'main' AND list_date >= DATE '2023-04-10')) THEN NULL
            WHEN days_listed = 1 AND board IN ('main', 'chinext') THEN 0.36
            WHEN is_st AND (board = 'main' OR (board = 'chinext' AND trade_date < DATE '2020-08-24')) THEN 0.05
            WHEN board = 'chinext' AND trade_date >= DATE '2020-08-24' THEN 0.20
            WHEN board = 'star' THEN 0.20
            WHEN board = 'bse' THEN 0.30
            ELSE 0.10
        END AS down_pct
    FROM joined
),
priced AS (
    SELECT
        *,
        -- limit price = round(pre_close x (1 +- pct), 2) in exact decimal arithmetic (half away from zero)
        CAST(round(CAST(pre_close AS DECIMAL(18, 4)) * CAST(1 + up_pct AS DECIMAL(18, 4)), 2) AS DOUBLE)
            AS up_limit_all,
        CAST(round(CAST(pre_close AS DECIMAL(18, 4)) * CAST(1 - down_pct AS DECIMAL(18, 4)), 2) AS DOUBLE)
            AS down_limit_all
    FROM limits
)
SELECT
    trade_date,
    ts_code,                                                                     -- stock code, e.g. 600000.SH
    name,                                                                        -- short name (reference snapshot)
    industry,                                                                    -- Shenwan level-1 industry
    board,                                                                       -- main | chinext | star | bse
    is_st,                                                                       -- ST or *ST on the day
    list_date,                                                                   -- listing date
    days_listed,                                                                 -- sessions since listing, 1 on the listing day
    is_suspended,                                                                -- listed but no trade on the day (prices, volume, caps null)
    CASE WHEN NOT is_suspended THEN open END                    AS open,         -- unadjusted open, CNY
    CASE WHEN NOT is_suspended THEN high END                    AS high,         -- unadjusted high, CNY
    CASE WHEN NOT is_suspended THEN low END                     AS low,          -- unadjusted low, CNY
    CASE WHEN NOT is_suspended THEN close END                   AS close,        -- unadjusted close, CNY
    CASE WHEN NOT is_suspended THEN pre_close END               AS pre_close,    -- exchange reference previous close (ex-right), CNY
    adj_factor,                                                                  -- cumulative adjustment factor
    CASE WHEN NOT is_suspended THEN close * adj_factor END      AS adj_close,    -- close x adj_factor (back-adjusted), CNY
    CASE WHEN NOT is_suspended THEN close / pre_close - 1 END   AS ret,          -- simple return close / pre_close - 1 (spans a suspension)
    CASE WHEN NOT is_suspended THEN vol END                     AS vol,          -- volume, shares
    CASE WHEN NOT is_suspended THEN amount END                  AS amount,       -- traded amount, CNY
    CASE WHEN NOT is_suspended THEN coalesce(turnover, vol / nullif(float_share, 0)) END   AS turnover, -- volume / float shares (fraction)
    CASE WHEN NOT is_suspended THEN coalesce(turnover_f, vol / nullif(free_share, 0)) END  AS turnover_f, -- volume / free-float shares (fraction)
    total_share,                                                                 -- total shares
    float_share,                                                                 -- float shares
    free_share,                                                                  -- free-float shares
    CASE WHEN NOT is_suspended THEN close * total_share END     AS total_mv,     -- close x total_share, CNY
    CASE WHEN NOT is_suspended THEN close * float_share END     AS float_mv,     -- close x float_share, CNY
    CASE WHEN NOT is_suspended THEN close * free_share END      AS free_float_mv, -- close x free_share, CNY
    CAST(up_pct AS DOUBLE)                                      AS limit_pct,    -- up-limit fraction (0.05/0.10/0.20/0.30; 0.44 on an old-rule listing day); null = no limit
    CASE WHEN NOT is_suspended THEN up_limit_all END            AS up_limit,     -- limit-up price, round(pre_close x (1 + pct), 2), CNY
    CASE WHEN NOT is_suspended THEN down_limit_all END          AS down_limit,   -- limit-down price, round(pre_close x (1 - pct), 2), CNY
    coalesce(NOT is_suspended AND close >= up_limit_all - 0.005, false)     AS is_limit_up, -- close >= up_limit - 0.005
    coalesce(NOT is_suspended AND close <= down_limit_all + 0.005, false)   AS is_limit_down, -- close <= down_limit + 0.005
    coalesce(NOT is_suspended AND high = low AND (
        abs(high - up_limit_all) < 0.005 OR abs(low - down_limit_all) < 0.005), false) AS is_locked, -- high = low = a limit price (no two-sided trading)
    NOT is_suspended AND prev_suspended                         AS is_resumption -- first trading day after a suspension (previous session suspended)
FROM priced
ORDER BY trade_date, ts_code  -- a day's file does not depend on the chunk it was computed in
