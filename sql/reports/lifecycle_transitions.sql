-- Lifecycle report, part 2: the transitions matrix between the last two periods: how many customers
-- went from each stage at the end of the previous period to each stage at as_of (customers signed
-- up by then). `lifecycle report lifecycle` replaces the literals marked @period and @as_of.
WITH judged AS (
    SELECT c.customer_id,
           lifecycle_stage(p.order_ts,
               CAST(period_start('month' /* @period */, TIMESTAMP '2024-12-31 23:59:59' /* @as_of */) AS TIMESTAMP)
                   - INTERVAL '1 microsecond') AS previous_stage,
           lifecycle_stage(p.order_ts, TIMESTAMP '2024-12-31 23:59:59' /* @as_of */) AS current_stage
    FROM customers c
    LEFT JOIN purchases p ON p.customer_id = c.customer_id
    WHERE c.signup_ts < CAST(period_start('month' /* @period */, TIMESTAMP '2024-12-31 23:59:59' /* @as_of */) AS TIMESTAMP)
    GROUP BY c.customer_id
)
SELECT previous_stage, current_stage, count(*) AS customers
FROM judged
GROUP BY previous_stage, current_stage
ORDER BY previous_stage, current_stage;
