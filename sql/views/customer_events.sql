-- customer_events: every event of `events` with its customer's attributes from `customers`, for
-- funnel breakdowns by a customer attribute (`lifecycle report funnel --breakdown channel`).
-- Registered as a view when the session has tables `customers` and `events` whose columns do not
-- clash.
SELECT e.*, c.* EXCLUDE (customer_id)
FROM events e
LEFT JOIN customers c ON c.customer_id = e.customer_id
