-- Cohort report: the retention triangle of `purchases` (customers and revenue per cohort and period).
-- `lifecycle report cohort` replaces the literals marked @period, @as_of and @mode with its
-- --period, --as-of (default: the latest order) and --mode; as written, this runs in `lifecycle sql`
-- on the embedded sample. Periods after as_of are absent from the triangle (shown blank in the
-- report). `value_per_customer` is the cohort's cumulative revenue per customer: its value curve.
SELECT cohort,
       period,
       cohort_size,
       active_customers,
       retention,
       revenue,
       revenue / cohort_size AS revenue_per_customer,
       cumulative_revenue / cohort_size AS value_per_customer
FROM cohort_retention('purchases', 'month' /* @period */, TIMESTAMP '2024-12-31 23:59:59' /* @as_of */,
                      'bounded' /* @mode */)
ORDER BY cohort, period;
