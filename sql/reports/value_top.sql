-- Value report, part 3: the 20 customers with the highest CLV.
-- `lifecycle report value` replaces the literal marked @as_of.
SELECT customer_id, frequency, recency, t, monetary_value, p_alive, expected_purchases, clv, stage, rfm_segment
FROM customer_value('purchases', TIMESTAMP '2024-12-31 23:59:59' /* @as_of */)
ORDER BY clv DESC, customer_id
LIMIT 20;
