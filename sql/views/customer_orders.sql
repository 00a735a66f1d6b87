-- customer_orders: every order of `purchases` with its customer's attributes from `customers`
-- (on the embedded sample: channel and country), so that breakdowns by a customer attribute read
-- one table: `cohort_retention('customer_orders', 'month', 'bounded', 'channel')`, or
-- `lifecycle report cohort --breakdown channel`. Registered as a view when the session has tables
-- `customers` and `purchases` whose columns do not clash.
SELECT p.*, c.* EXCLUDE (customer_id)
FROM purchases p
LEFT JOIN customers c ON c.customer_id = p.customer_id
