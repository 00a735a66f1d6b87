-- Value report, part 2: distribution of P(alive) and of CLV in ten buckets each.
-- `lifecycle report value` replaces the literal marked @as_of.
WITH v AS (SELECT p_alive, clv FROM customer_value('purchases', TIMESTAMP '2024-12-31 23:59:59' /* @as_of */)),
     top AS (SELECT max(clv) AS m FROM v)
SELECT 'p_alive' AS measure,
       least(CAST(floor(p_alive * 10) AS BIGINT), 9) AS bucket,
       CAST(least(CAST(floor(p_alive * 10) AS BIGINT), 9) AS DOUBLE) / 10 AS lower_bound,
       count(*) AS customers
FROM v GROUP BY 1, 2, 3
UNION ALL
SELECT 'clv', least(CAST(floor(v.clv / greatest(top.m, 1e-9) * 10) AS BIGINT), 9),
       CAST(least(CAST(floor(v.clv / greatest(top.m, 1e-9) * 10) AS BIGINT), 9) AS DOUBLE) * top.m / 10,
       count(*)
FROM v CROSS JOIN top GROUP BY 1, 2, 3
ORDER BY measure, bucket;
