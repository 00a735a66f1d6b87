-- Funnel report: conversion per step, drop-off and median time between steps, from `events`.
-- `lifecycle report funnel --steps a,b,c --window 7d` replaces the condition list between
-- @steps and @end_steps, the window marked @window (seconds), the step count
-- marked @n_steps and the literal marked @as_of.
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
)
SELECT s.step,
       count(r.customer_id) AS customers,
       median(CASE WHEN s.step > 1
                   THEN (CAST(array_element(r.t, s.step) AS BIGINT) - CAST(array_element(r.t, s.step - 1) AS BIGINT)) / 1e6
              END) AS median_seconds_from_previous
FROM steps s
LEFT JOIN reached r ON cardinality(r.t) >= s.step
GROUP BY s.step
ORDER BY s.step;
