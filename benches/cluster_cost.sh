#!/usr/bin/env bash
# What a cluster costs on one machine: the lifecycle_stage and cohort_retention queries of
# compare_peers.py run by one `lifecycle sql` process and by a cluster of 1 scheduler + 2 executors
# (each executor --concurrent-tasks 1, so both set-ups use the machine's 2 cores), on the same files.
# Prints, per query and run: wall seconds (whole client process), the peak bytes of the executors'
# shuffle files during the query (executors delete a job's shuffle files when it ends, so the work
# directories are sampled every 20 ms while the query runs), and tasks run. DATA/purchases may be
# Parquet files or a lifecycle store (`lifecycle store sync`): on a store the per-customer stage
# reads its buckets in place and only the small per-stage partial aggregates are shuffled.
#
#   benches/cluster_cost.sh target/release/lifecycle /tmp/lc-dense [runs]
set -euo pipefail
bin=$(realpath "$1"); data=$(realpath "$2"); runs=${3:-3}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
sport=$(free_port)
"$bin" scheduler --bind "127.0.0.1:$sport" 2>"$work/scheduler.log" & pids+=($!)
sleep 1
for i in 1 2; do
  mkdir -p "$work/w$i"
  RUST_LOG=ballista_executor::executor_server=info "$bin" executor --scheduler "127.0.0.1:$sport" \
    --bind "127.0.0.1:$(free_port)" --grpc-bind "127.0.0.1:$(free_port)" --concurrent-tasks 1 \
    --work-dir "$work/w$i" 2>"$work/e$i.log" & pids+=($!)
done
sleep 3

as_of="2025-01-01 00:00:00"
declare -A queries=(
  [lifecycle_stage]="SELECT s, count(*) FROM (SELECT lifecycle_stage(order_ts, TIMESTAMP '$as_of') AS s FROM purchases GROUP BY customer_id) GROUP BY s ORDER BY s"
  [cohort_retention_month]="SELECT count(*) FILTER (WHERE active_customers > 0), sum(active_customers), round(sum(revenue), 2) FROM cohort_retention('purchases', 'month')"
)
tasks() { cat "$work"/e*.log | grep -c "Finished task" || true; }
# (Files come and go while du walks the directories: a vanished one is not an error.)
shuffled() { { du -sb "$work"/w1 "$work"/w2 2>/dev/null || true; } | awk '{s += $1} END {print s + 0}'; }

printf "%-24s %-8s %8s %14s %6s  %s\n" query where seconds peak_shuffle tasks answer
for name in lifecycle_stage cohort_retention_month; do
  q=${queries[$name]}
  for r in $(seq "$runs"); do
    t0=$(date +%s.%N)
    ans=$("$bin" sql --table "purchases=$data/purchases" --format csv -c "$q" | tail -n +2 | tr '\n' ' ')
    t1=$(date +%s.%N)
    printf "%-24s %-8s %8.2f %14s %6s  %s\n" "$name" local "$(echo "$t1 - $t0" | bc)" - - "$ans"
    b0=$(shuffled); k0=$(tasks)
    t0=$(date +%s.%N)
    "$bin" sql --cluster "df://127.0.0.1:$sport" --table "purchases=$data/purchases" --format csv -c "$q" \
      >"$work/answer" & client=$!
    peak=$b0
    while kill -0 "$client" 2>/dev/null; do
      now=$(shuffled); [ "$now" -gt "$peak" ] && peak=$now
      sleep 0.02
    done
    wait "$client"
    t1=$(date +%s.%N)
    ans=$(tail -n +2 "$work/answer" | tr '\n' ' ')
    sleep 1
    printf "%-24s %-8s %8.2f %14s %6s  %s\n" "$name" cluster "$(echo "$t1 - $t0" | bc)" "$(( peak - b0 ))" "$(( $(tasks) - k0 ))" "$ans"
  done
done
