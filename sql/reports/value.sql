-- Value report: the customer_value summary (BG/NBD + Gamma-Gamma on the purchases as of as_of):
-- one row per RFM segment with customers, mean P(alive), expected purchases and total CLV.
-- `lifecycle report value` replaces the literal marked @as_of.
SELECT rfm_segment,
       count(*) AS customers,
       avg(p_alive) AS avg_p_alive,
       sum(expected_purchases) AS expected_purchases,
       sum(clv) AS clv
FROM customer_value('purchases', TIMESTAMP '2024-12-31 23:59:59' /* @as_of */)
GROUP BY rfm_segment
ORDER BY clv DESC;
