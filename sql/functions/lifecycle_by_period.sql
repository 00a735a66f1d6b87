-- lifecycle_by_period(table, granularity [, as_of]): PostHog's lifecycle on purchases.
--
-- The table function fills the parameters marked @table, @granularity, @as_of_filter,
-- @last_period (the as_of period, or NULL for the last order's) and @step (the period length
-- as an interval) and runs this query; as shipped, it runs on the sample by month.
--
-- For each customer, the distinct periods with at least one order (at or before as_of). In each
-- such period the customer is 'new' (its first period), 'returning' (it also ordered in the
-- previous period) or 'resurrecting' (otherwise); it is 'dormant' in the single period right after
-- each active period in which it has no order. Every period from the first order to as_of (or the
-- last order) appears with all four statuses (0 when none). Periods are UTC period starts, as
-- TIMESTAMP in microseconds (which holds every DATE). Rows with a NULL customer_id or order_ts
-- are ignored, as in every lifecycle table function.
WITH active AS (
    SELECT DISTINCT customer_id,
           arrow_cast(period_start('month' /* @granularity */, order_ts), 'Timestamp(Microsecond, None)') AS period
    FROM purchases /* @table */
    WHERE customer_id IS NOT NULL AND order_ts IS NOT NULL AND TRUE /* @as_of_filter */
),
bounds AS (
    SELECT min(period) AS first_period, coalesce(NULL /* @last_period */, max(period)) AS last_period FROM active
),
-- The series runs over DATEs: DataFusion's timestamp series is in nanoseconds, which end in 2262.
periods AS (
    SELECT arrow_cast(day, 'Timestamp(Microsecond, None)') AS period
    FROM (
        SELECT unnest(generate_series(CAST(first_period AS DATE), CAST(last_period AS DATE),
                                      INTERVAL '1 month' /* @step */)) AS day
        FROM bounds
        WHERE first_period IS NOT NULL
    )
),
neighbours AS (
    SELECT customer_id,
           period,
           lag(period) OVER (PARTITION BY customer_id ORDER BY period) AS previous_active,
           lead(period) OVER (PARTITION BY customer_id ORDER BY period) AS next_active
    FROM active
),
statuses AS (
    SELECT period,
           CASE WHEN previous_active IS NULL THEN 'new'
                WHEN previous_active = period - INTERVAL '1 month' /* @step */ THEN 'returning'
                ELSE 'resurrecting' END AS status
    FROM neighbours
    UNION ALL
    SELECT period + INTERVAL '1 month' /* @step */ AS period, 'dormant' AS status
    FROM neighbours
    WHERE next_active IS NULL OR next_active <> period + INTERVAL '1 month' /* @step */
),
counts AS (
    SELECT period, status, count(*) AS customers FROM statuses GROUP BY period, status
),
grid AS (
    SELECT p.period, s.status
    FROM periods p
    CROSS JOIN (SELECT unnest(['dormant', 'new', 'resurrecting', 'returning']) AS status) AS s
)
SELECT g.period, g.status, coalesce(c.customers, 0) AS customers
FROM grid g
LEFT JOIN counts c ON c.period = g.period AND c.status = g.status
ORDER BY g.period, g.status
