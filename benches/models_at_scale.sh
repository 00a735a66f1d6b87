#!/usr/bin/env bash
# End-to-end timings of the customer-base models on the generator's data (release build):
#   benches/models_at_scale.sh [CUSTOMERS] [DIR]
# Generates CUSTOMERS customers (default 10 million: about 109 million purchases) without events,
# then times, each query on its own: the floor (count, sum GROUP BY customer), lifecycle_stage,
# rfm_summary and churn_risk grouped by customer, and bgnbd_fit / gamma_gamma_fit over the
# materialised summary. RUST_LOG=lifecycle_udfs=debug prints the fits' own time (collapsed rows, iterations).
set -euo pipefail
n="${1:-10000000}"
dir="${2:-/tmp/lifecycle-models-$n}"
bin="${LIFECYCLE_BIN:-target/release/lifecycle}"
[ -x "$bin" ] || cargo build --release
if [ ! -d "$dir/purchases" ]; then
  /usr/bin/time -f "generate: %e s, %M KB peak" "$bin" generate --customers "$n" --shape dense --out "$dir" --files 16 --no-events
fi
sql=$(mktemp)
cat > "$sql" <<'SQL'
SELECT count(*), sum(n) FROM (SELECT customer_id, count(*) AS n, sum(amount) AS s FROM purchases GROUP BY customer_id);
SELECT count(*) FROM (SELECT customer_id, lifecycle_stage(order_ts, TIMESTAMP '2025-01-01') AS s FROM purchases GROUP BY customer_id);
SELECT count(*), sum(s.frequency) FROM (SELECT customer_id, rfm_summary(order_ts, amount, TIMESTAMP '2025-01-01') AS s FROM purchases GROUP BY customer_id);
SELECT count(*), sum(r) FROM (SELECT customer_id, churn_risk(order_ts, TIMESTAMP '2025-01-01') AS r FROM purchases GROUP BY customer_id);
CREATE TABLE s AS SELECT rfm_summary(order_ts, amount, TIMESTAMP '2025-01-01') AS s FROM purchases GROUP BY customer_id;
SELECT bgnbd_fit(s.frequency, s.recency, s.t) AS p FROM s;
SELECT gamma_gamma_fit(s.frequency, s.monetary_value) AS g FROM s;
SQL
RUST_LOG=lifecycle_udfs=debug /usr/bin/time -f "all queries: %e s, %M KB peak" \
  "$bin" sql --table "purchases=$dir/purchases" --timing -f "$sql"
rm -f "$sql"
