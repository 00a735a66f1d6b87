-- customer_stages: every customer's lifecycle stage as of the latest order in `purchases`.
-- Registered as a view when the session has tables `customers` and `purchases` (the embedded sample
-- does). Run it as is in `lifecycle sql`, or change the as_of expression to judge at another date.
SELECT
    c.customer_id,
    count(p.order_id) AS orders,
    min(p.order_ts) AS first_order_ts,
    max(p.order_ts) AS last_order_ts,
    lifecycle_stage(p.order_ts, (SELECT max(order_ts) FROM purchases)) AS stage,
    churn_flag(p.order_ts, (SELECT max(order_ts) FROM purchases)) AS churned
FROM customers c
LEFT JOIN purchases p ON p.customer_id = c.customer_id
GROUP BY c.customer_id
