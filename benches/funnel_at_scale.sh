#!/usr/bin/env bash
# End-to-end timings of the event aggregates on the generator's site events (release build):
#   benches/funnel_at_scale.sh [CUSTOMERS] [DIR]
# Generates CUSTOMERS customers (default 1 million: about 102 million events), then runs each query
# in its own process (time and peak memory): the floor count(*) GROUP BY customer_id, the floor
# with the five step conditions evaluated (bool_or of each), window_funnel in the default mode
# (groups settle at the last step), in strict_order mode (every matching event kept, as
# ClickHouse does), in strict_once mode (one event per matching row), window_funnel_times,
# sequence_count, and sessionize next to row_number() over the same window.
set -euo pipefail
n="${1:-1000000}"
dir="${2:-/tmp/lifecycle-events-$n}"
bin="${LIFECYCLE_BIN:-target/release/lifecycle}"
[ -x "$bin" ] || cargo build --release
if [ ! -d "$dir/events" ]; then
  /usr/bin/time -f "generate: %e s, %M KB peak" "$bin" generate --customers "$n" --shape dense --out "$dir"
fi
steps="event_ts, event_type = 'visit', event_type = 'view', event_type = 'cart', event_type = 'checkout', event_type = 'purchase'"
run() {
  local name="$1" sql="$2"
  echo "== $name"
  /usr/bin/time -f "$name: %e s, %M KB peak" "$bin" sql --table "events=$dir/events" --timing -c "$sql"
}
run floor_count "SELECT count(*), sum(n) FROM (SELECT customer_id, count(*) AS n FROM events GROUP BY customer_id)"
run floor_conditions "SELECT count(*), count(a), count(e) FROM (SELECT customer_id, bool_or(event_type = 'visit') AS a, bool_or(event_type = 'view') AS b, bool_or(event_type = 'cart') AS c, bool_or(event_type = 'checkout') AS d, bool_or(event_type = 'purchase') AS e FROM events GROUP BY customer_id)"
run window_funnel "SELECT level, count(*) FROM (SELECT customer_id, window_funnel(604800, $steps) AS level FROM events GROUP BY customer_id) GROUP BY level ORDER BY level"
run window_funnel_strict_order "SELECT level, count(*) FROM (SELECT customer_id, window_funnel(604800, $steps, 'strict_order') AS level FROM events GROUP BY customer_id) GROUP BY level ORDER BY level"
run window_funnel_strict_once "SELECT level, count(*) FROM (SELECT customer_id, window_funnel(604800, $steps, 'strict_once') AS level FROM events GROUP BY customer_id) GROUP BY level ORDER BY level"
run window_funnel_strict_once_order "SELECT level, count(*) FROM (SELECT customer_id, window_funnel(604800, $steps, 'strict_once,strict_order') AS level FROM events GROUP BY customer_id) GROUP BY level ORDER BY level"
run window_funnel_times "SELECT cardinality(t), count(*) FROM (SELECT customer_id, window_funnel_times(604800, $steps) AS t FROM events GROUP BY customer_id) GROUP BY 1 ORDER BY 1"
run sequence_count "SELECT sum(n), count(*) FROM (SELECT customer_id, sequence_count('(?1).*(?2)', event_ts, event_type = 'cart', event_type = 'purchase') AS n FROM events GROUP BY customer_id)"
run floor_row_number "SELECT count(*), max(n) FROM (SELECT row_number() OVER (PARTITION BY customer_id ORDER BY event_ts) AS n FROM events)"
run sessionize "SELECT count(*), max(s) FROM (SELECT sessionize(event_ts, INTERVAL '30 minutes') OVER (PARTITION BY customer_id ORDER BY event_ts) AS s FROM events)"
