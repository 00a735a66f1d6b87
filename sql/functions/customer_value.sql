-- customer_value(table, as_of [, horizon_days]): one row per customer of `table`
-- (columns customer_id, order_ts, amount) with orders at or before as_of.
--
-- The table function fills the parameters marked @table, @as_of, @horizon_days and @months
-- (= horizon_days / 30, rounded) and runs this query; as shipped, it runs on the sample. Time is in days throughout, so the
-- CLV is lifetimes' customer_lifetime_value with freq='D'.
--
--   frequency, recency, t, monetary_value   rfm_summary (lifetimes' definitions, days)
--   p_alive                                 BG/NBD P(alive), model fitted on these customers
--   expected_purchases                      BG/NBD expected purchases in the next horizon_days
--   expected_value                          Gamma-Gamma expected spend per purchase
--   clv                                     discounted value over 12 /* @months */ months (1% a month)
--   stage                                   lifecycle_stage at as_of (session thresholds)
--   rfm_segment                             R x F segment of quintile scores: R by days since the
--                                           last order (R5 = most recent), F by frequency; ties
--                                           broken by customer_id
--   models_converged                        both fits converged; when not (too little data, e.g.
--                                           almost only one-time buyers), the predictions that
--                                           need the failed fit are NULL, never impossible numbers
WITH per_customer AS (
    SELECT customer_id,
           rfm_summary(order_ts, amount, TIMESTAMP '2025-01-01 00:00:00' /* @as_of */) AS s,
           lifecycle_stage(order_ts, TIMESTAMP '2025-01-01 00:00:00' /* @as_of */) AS stage
    FROM purchases /* @table */
    WHERE customer_id IS NOT NULL
    GROUP BY customer_id
),
summary AS (
    SELECT customer_id,
           s.frequency AS frequency,
           s.recency AS recency,
           s.t AS t,
           s.monetary_value AS monetary_value,
           stage
    FROM per_customer
    WHERE s IS NOT NULL
),
models AS (
    SELECT bgnbd_fit(frequency, recency, t) AS bg,
           gamma_gamma_fit(frequency, monetary_value) AS gg
    FROM summary
),
scored AS (
    SELECT summary.*,
           ntile(5) OVER (ORDER BY t - recency DESC, customer_id) AS r_score,
           ntile(5) OVER (ORDER BY frequency, customer_id) AS f_score
    FROM summary
)
SELECT c.customer_id,
       c.frequency,
       c.recency,
       c.t,
       c.monetary_value,
       CASE WHEN m.bg.converged THEN bgnbd_p_alive(m.bg, c.frequency, c.recency, c.t) END AS p_alive,
       CASE WHEN m.bg.converged
            THEN bgnbd_expected_purchases(m.bg, 365.0 /* @horizon_days */, c.frequency, c.recency, c.t) END AS expected_purchases,
       CASE WHEN m.gg.converged
            THEN gamma_gamma_expected_value(m.gg, c.frequency, c.monetary_value) END AS expected_value,
       CASE WHEN m.bg.converged AND m.gg.converged
            THEN clv(m.bg, m.gg, c.frequency, c.recency, c.t, c.monetary_value, 12 /* @months */) END AS clv,
       c.stage,
       rfm_segment(c.r_score, c.f_score) AS rfm_segment,
       coalesce(m.bg.converged AND m.gg.converged, false) AS models_converged
FROM scored c CROSS JOIN models m
