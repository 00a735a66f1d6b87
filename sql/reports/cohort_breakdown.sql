-- Cohort report by breakdown: one retention triangle per value of a column, each customer
-- attributed the value of its first order. `lifecycle report cohort --breakdown COLUMN` replaces
-- the literals marked @table (purchases when it has the column, else the shipped view
-- customer_orders, which adds each customer's attributes from `customers`), @breakdown, @period,
-- @as_of and @mode; as written, this runs in `lifecycle sql` on the embedded sample, by channel.
SELECT breakdown,
       cohort,
       period,
       cohort_size,
       active_customers,
       retention,
       revenue,
       revenue / cohort_size AS revenue_per_customer,
       cumulative_revenue / cohort_size AS value_per_customer
FROM cohort_retention('customer_orders' /* @table */, 'month' /* @period */,
                      TIMESTAMP '2024-12-31 23:59:59' /* @as_of */, 'bounded' /* @mode */,
                      'channel' /* @breakdown */)
ORDER BY breakdown NULLS LAST, cohort, period;
