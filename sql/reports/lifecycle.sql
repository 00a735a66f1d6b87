-- Lifecycle report, part 1: customers per lifecycle stage at the end of each period.
-- Customers count from their signup (`customers.signup_ts`); a customer without an order by the
-- end of a period is a prospect. Stages use the session's thresholds (SET lifecycle.churn_days ...).
-- `lifecycle report lifecycle` replaces the literals marked @period, @step and @as_of.
WITH bounds AS (
    SELECT period_start('month' /* @period */, min(order_ts)) AS first_period FROM purchases
),
periods AS (
    SELECT unnest(generate_series(
               CAST(first_period AS TIMESTAMP),
               CAST(period_start('month' /* @period */, TIMESTAMP '2024-12-31 23:59:59' /* @as_of */) AS TIMESTAMP),
               INTERVAL '1 month' /* @step */)) AS period
    FROM bounds
),
ends AS (
    -- Judged at the end of each period, or at as_of for the last one.
    SELECT period,
           least(period + INTERVAL '1 month' /* @step */ - INTERVAL '1 microsecond',
                 TIMESTAMP '2024-12-31 23:59:59' /* @as_of */) AS period_end
    FROM periods
),
stages AS (
    SELECT e.period, c.customer_id, lifecycle_stage(p.order_ts, e.period_end) AS stage
    FROM ends e
    JOIN customers c ON c.signup_ts <= e.period_end
    LEFT JOIN purchases p ON p.customer_id = c.customer_id AND p.order_ts <= e.period_end
    GROUP BY e.period, c.customer_id
)
SELECT period, stage, count(*) AS customers
FROM stages
GROUP BY period, stage
ORDER BY period, stage;
