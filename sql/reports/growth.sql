-- Growth report: PostHog's lifecycle per period (new, returning, resurrecting, dormant customers).
-- `lifecycle report growth` replaces the literals marked @period and @as_of; the chart
-- draws dormant customers below zero.
SELECT period, status, customers
FROM lifecycle_by_period('purchases', 'month' /* @period */, TIMESTAMP '2024-12-31 23:59:59' /* @as_of */)
ORDER BY period, status;
