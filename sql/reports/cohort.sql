-- Cohort report: the retention triangle of `purchases` (customers and revenue per cohort and period).
-- `lifecycle report cohort` replaces the literals marked @period and @as_of with its
-- --period and --as-of (default: the latest order); as written, this runs in `lifecycle sql` on the
-- embedded sample. Periods after as_of are absent from the triangle (shown blank in the report).
SELECT cohort,
       period,
       cohort_size,
       active_customers,
       retention,
       revenue,
       revenue / cohort_size AS revenue_per_customer
FROM cohort_retention('purchases', 'month' /* @period */, TIMESTAMP '2024-12-31 23:59:59' /* @as_of */)
ORDER BY cohort, period;
