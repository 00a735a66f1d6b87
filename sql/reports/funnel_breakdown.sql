-- Funnel report by breakdown: the funnel of sql/reports/funnel.sql once per value of a column, each
-- customer attributed the value of its first event (of several at one instant, the smallest).
-- `lifecycle report funnel --breakdown COLUMN` replaces the table marked @table (events when it has
-- the column, else the shipped view customer_events, which adds each customer's attributes from
-- `customers`), the column marked @breakdown, and the parameters of funnel.sql; as written, this
-- runs in `lifecycle sql` on the embedded sample, by channel. A step no customer of a value reached
-- has no row (the report shows it as 0).
WITH reached AS (
    SELECT customer_id,
           first_value(channel /* @breakdown */ ORDER BY event_ts, channel /* @breakdown */) AS breakdown,
           window_funnel_times(604800 /* @window */, event_ts,
               /* @steps */ event_type = 'visit', event_type = 'view', event_type = 'cart',
               event_type = 'checkout', event_type = 'purchase' /* @end_steps */) AS t
    FROM customer_events /* @table */
    WHERE event_ts <= TIMESTAMP '2024-12-31 23:59:59' /* @as_of */
    GROUP BY customer_id
),
steps AS (
    SELECT unnest(generate_series(1, 5 /* @n_steps */)) AS step
),
times AS (
    SELECT r.breakdown,
           s.step,
           r.customer_id,
           CASE WHEN s.step > 1
                THEN (CAST(array_element(r.t, s.step) AS BIGINT) - CAST(array_element(r.t, s.step - 1) AS BIGINT)) / 1e6
           END AS from_previous,
           CASE WHEN s.step > 1
                THEN (CAST(array_element(r.t, s.step) AS BIGINT) - CAST(array_element(r.t, 1) AS BIGINT)) / 1e6
           END AS from_first
    FROM reached r
    JOIN steps s ON cardinality(r.t) >= s.step
)
SELECT breakdown,
       step,
       count(customer_id) AS customers,
       median(from_previous) AS median_seconds_from_previous,
       array_element(array_sort(array_agg(from_previous) FILTER (WHERE from_previous IS NOT NULL)),
                     CAST(ceil(0.9 * count(from_previous)) AS BIGINT)) AS p90_seconds_from_previous,
       median(from_first) AS median_seconds_from_first,
       array_element(array_sort(array_agg(from_first) FILTER (WHERE from_first IS NOT NULL)),
                     CAST(ceil(0.9 * count(from_first)) AS BIGINT)) AS p90_seconds_from_first
FROM times
GROUP BY breakdown, step
ORDER BY breakdown NULLS LAST, step;
