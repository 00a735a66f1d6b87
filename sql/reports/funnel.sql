-- Funnel report: conversion per step, drop-off and time to convert, from `events`.
-- `lifecycle report funnel --steps a,b,c --window 7d` replaces the condition list between
-- @steps and @end_steps, the window marked @window (seconds), the step count
-- marked @n_steps and the literal marked @as_of.
-- Times are in seconds, from the step times of each customer's chain (window_funnel_times): from
-- the previous step, and from the first step (the time to convert to this step): the median
-- and the 90th percentile (nearest rank: the smallest time at least 90% of the customers who
-- reached the step took no longer than) over those customers.
WITH reached AS (
    SELECT customer_id,
           window_funnel_times(604800 /* @window */, event_ts,
               /* @steps */ event_type = 'visit', event_type = 'view', event_type = 'cart',
               event_type = 'checkout', event_type = 'purchase' /* @end_steps */) AS t
    FROM events
    WHERE event_ts <= TIMESTAMP '2024-12-31 23:59:59' /* @as_of */
    GROUP BY customer_id
),
steps AS (
    SELECT unnest(generate_series(1, 5 /* @n_steps */)) AS step
),
times AS (
    SELECT s.step,
           r.customer_id,
           CASE WHEN s.step > 1
                THEN (CAST(array_element(r.t, s.step) AS BIGINT) - CAST(array_element(r.t, s.step - 1) AS BIGINT)) / 1e6
           END AS from_previous,
           CASE WHEN s.step > 1
                THEN (CAST(array_element(r.t, s.step) AS BIGINT) - CAST(array_element(r.t, 1) AS BIGINT)) / 1e6
           END AS from_first
    FROM steps s
    LEFT JOIN reached r ON cardinality(r.t) >= s.step
)
SELECT step,
       count(customer_id) AS customers,
       median(from_previous) AS median_seconds_from_previous,
       array_element(array_sort(array_agg(from_previous) FILTER (WHERE from_previous IS NOT NULL)),
                     CAST(ceil(0.9 * count(from_previous)) AS BIGINT)) AS p90_seconds_from_previous,
       median(from_first) AS median_seconds_from_first,
       array_element(array_sort(array_agg(from_first) FILTER (WHERE from_first IS NOT NULL)),
                     CAST(ceil(0.9 * count(from_first)) AS BIGINT)) AS p90_seconds_from_first
FROM times
GROUP BY step
ORDER BY step;
