"""The lifecycle store with real components: another Delta implementation (the `deltalake` Python
package, delta-rs's Python bindings) reads a store written by `lifecycle store sync` with the same
rows as the source files, every file holds only its bucket's keys (Iceberg's bucket transform,
computed here independently) sorted by (key, time); `store sync` killed (SIGKILL) at random
moments leaves the store at a committed version with exactly that version's rows, the next sync
completes it and removes the files of the killed attempts; two syncs at once: one wins, the other
gets a clear error, and the store answers as the source files.

Usage: python store_interop.py PATH/TO/lifecycle   (run by .ci/run in its venv: deltalake, pyarrow)
"""

import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import DeltaTable


def murmur3_32(data: bytes, seed: int = 0) -> int:
    """MurmurHash3 x86_32 (Austin Appleby's reference), written here from the published algorithm."""
    c1, c2, mask = 0xCC9E2D51, 0x1B873593, 0xFFFFFFFF
    rotl = lambda x, r: ((x << r) | (x >> (32 - r))) & mask
    h = seed
    n = len(data) // 4
    for i in range(n):
        k = struct.unpack_from("<I", data, 4 * i)[0]
        k = rotl((k * c1) & mask, 15) * c2 & mask
        h = (rotl(h ^ k, 13) * 5 + 0xE6546B64) & mask
    tail = data[4 * n:]
    k = 0
    for i, b in enumerate(tail):
        k |= b << (8 * i)
    if tail:
        h ^= rotl((k * c1) & mask, 15) * c2 & mask
    h ^= len(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & mask
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & mask
    h ^= h >> 16
    return h - (1 << 32) if h & 0x80000000 else h


def iceberg_bucket(key: int, n: int) -> int:
    assert murmur3_32(struct.pack("<q", 34)) == 2017239379  # the Iceberg spec's vector
    return (murmur3_32(struct.pack("<q", key)) & 0x7FFFFFFF) % n


def lifecycle(binary, *args, check=True):
    p = subprocess.run([binary, *args], capture_output=True, text=True, timeout=600)
    if check and p.returncode != 0:
        sys.exit(f"lifecycle {' '.join(args)} failed: {p.stderr}")
    return p


def count_sum(binary, path):
    out = lifecycle(binary, "sql", "--format", "csv", "--table", f"purchases={path}", "-c",
                    "SELECT count(*), sum(amount), count(DISTINCT customer_id) FROM purchases").stdout
    return out.strip().splitlines()[1]


def sorted_table(t):
    return t.sort_by([(c, "ascending") for c in t.column_names])


def check_layout(store, buckets):
    """Every data file: only its bucket's keys, sorted by (key, time)."""
    dt = DeltaTable(store)
    conf = dt.metadata().configuration
    assert conf["lifecycle.store.buckets"] == str(buckets), conf
    assert conf["lifecycle.store.hash"] == "iceberg-bucket-murmur3_x86_32", conf
    files = dt.file_uris()
    assert files, "no files"
    for f in files:
        rel = f.split(store.rstrip("/") + "/", 1)[-1]
        b = int(rel.split("/")[0][1:])
        t = pq.read_table(f.replace("file://", ""))
        keys = t.column("customer_id").to_pylist()
        ts = t.column("order_ts").cast(pa.int64()).to_pylist()
        for k in set(keys):
            want = buckets if k is None else iceberg_bucket(k, buckets)
            assert want == b, f"{rel}: key {k} belongs in bucket {want}"
        pairs = list(zip(keys, ts))
        assert pairs == sorted(pairs), f"{rel}: not sorted by (key, time)"
    return dt


def run_files(store):
    """The run files of the store's current version (delta-rs's view)."""
    return len(DeltaTable(store).file_uris())


def check_orphans(store):
    """Every data file on disk is one that some version of the log adds."""
    named = set()
    for entry in sorted(os.listdir(os.path.join(store, "_delta_log"))):
        if entry.endswith(".json"):
            with open(os.path.join(store, "_delta_log", entry)) as f:
                for line in f:
                    a = json.loads(line)
                    if "add" in a:
                        named.add(a["add"]["path"])
    on_disk = set()
    for root, _, files in os.walk(store):
        for f in files:
            rel = os.path.relpath(os.path.join(root, f), store)
            if rel.startswith("b"):
                on_disk.add(rel)
    assert on_disk <= named, f"files of killed attempts left: {sorted(on_disk - named)[:5]}"


def pg_serves_a_store_and_follows_its_syncs(binary, data, parts, tmp):
    """`lifecycle serve --pg-listen` on a store: psycopg's answers equal the source files', and a
    sync while the server runs shows in its next query (no restart)."""
    import re
    import socket
    import psycopg
    src, store = os.path.join(tmp, "pg-src"), os.path.join(tmp, "pg-store")
    os.makedirs(src)
    shutil.copy(os.path.join(data, "purchases", parts[0]), src)
    lifecycle(binary, "store", "sync", "--table", f"purchases={src}", "--store", store)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([binary, "serve", "--pg-listen", f"127.0.0.1:{port}", "--table", f"purchases={store}"],
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            line = server.stderr.readline()
            if re.search(r"Postgres server listening", line or ""):
                break
            if not line and server.poll() is not None:
                sys.exit(f"the server exited: {server.returncode}")
        stage = ("SELECT s, count(*) FROM (SELECT lifecycle_stage(order_ts, TIMESTAMP '2024-06-30') AS s "
                 "FROM purchases GROUP BY customer_id) GROUP BY s ORDER BY s")
        total = "SELECT count(*), sum(amount) FROM purchases"

        def on_files(sql):
            out = lifecycle(binary, "sql", "--format", "csv", "--table", f"purchases={src}", "-c", sql).stdout
            return [line.split(",") for line in out.strip().splitlines()[1:]]

        with psycopg.connect(f"host=127.0.0.1 port={port} user=anyone dbname=lifecycle", autocommit=True) as conn:
            def ask(sql):
                return [[str(v) for v in row] for row in conn.execute(sql).fetchall()]
            assert ask(stage) == on_files(stage), (ask(stage), on_files(stage))
            before = ask(total)
            shutil.copy(os.path.join(data, "purchases", parts[1]), src)
            lifecycle(binary, "store", "sync", "--table", f"purchases={src}", "--store", store)
            after = ask(total)
            assert after != before and after == on_files(total), (before, after, on_files(total))
            assert ask(stage) == on_files(stage)
        print(f"postgres protocol (psycopg) on a store: answers equal the files'; a sync while serving "
              f"shows in the next query ({before[0][0]} -> {after[0][0]} rows)")
    finally:
        server.terminate()
        server.wait(timeout=30)


def main():
    binary = os.path.abspath(sys.argv[1])
    tmp = tempfile.mkdtemp(prefix="lc-store-")
    try:
        data = os.path.join(tmp, "data")
        lifecycle(binary, "generate", "--customers", "400000", "--files", "4", "--no-events",
                  "--out", data)
        src = os.path.join(tmp, "src")
        os.makedirs(src)
        parts = sorted(os.listdir(os.path.join(data, "purchases")))
        for p in parts[:2]:
            shutil.copy(os.path.join(data, "purchases", p), src)
        store = os.path.join(tmp, "store")
        # --no-merge: the runs stay (one per sync) for the kill and compaction checks below.
        lifecycle(binary, "store", "sync", "--table", f"purchases={src}", "--store", store, "--buckets", "8",
                  "--no-merge")
        shutil.copy(os.path.join(data, "purchases", parts[2]), src)
        lifecycle(binary, "store", "sync", "--table", f"purchases={src}", "--store", store, "--no-merge")

        # Another Delta implementation reads the same rows as the source files.
        dt = check_layout(store, 8)
        got = sorted_table(dt.to_pyarrow_table())
        want = sorted_table(pq.read_table(src))
        assert got.num_rows == want.num_rows, (got.num_rows, want.num_rows)
        for c in want.column_names:
            assert got.column(c).cast(want.schema.field(c).type).equals(want.column(c)), f"column {c} differs"
        assert dt.version() == 1
        print(f"deltalake {dt.version()}: {got.num_rows} rows equal the source's")

        # Killed at random moments: a committed version's rows or the previous one's, never a mix;
        # the next sync completes it and removes the killed attempts' files. Each attempt starts
        # from the same store; the kill lands uniformly within one full sync's duration.
        shutil.copy(os.path.join(data, "purchases", parts[3]), src)
        before, after = count_sum(binary, store), count_sum(binary, src)
        pristine = os.path.join(tmp, "pristine")
        shutil.copytree(store, pristine)
        sync_cmd = [binary, "store", "sync", "--table", f"purchases={src}", "--store", store, "--no-merge"]
        start = time.perf_counter()
        lifecycle(binary, *sync_cmd[1:])
        full = time.perf_counter() - start
        random.seed(7)
        outcomes = {"before": 0, "after": 0}
        for i in range(12):
            shutil.rmtree(store)
            shutil.copytree(pristine, store)
            p = subprocess.Popen(sync_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            # Half the kills in the last third, where the commit and the clean-up happen.
            time.sleep(random.uniform(0.0, full) if i % 2 == 0 else random.uniform(0.65 * full, 1.05 * full))
            p.send_signal(signal.SIGKILL)
            p.wait()
            now = count_sum(binary, store)
            assert now in (before, after), f"kill {i}: store answers {now}, neither {before} nor {after}"
            outcomes["after" if now == after else "before"] += 1
            lifecycle(binary, *sync_cmd[1:])
            assert count_sum(binary, store) == after, f"kill {i}: the next sync did not complete it"
            check_orphans(store)
        print(f"kills within a {full:.2f} s sync: {outcomes} (store at the old or the new version, "
              "never a mix; the next sync completed it and left no file of the killed attempt)")
        check_layout(store, 8)

        # Compaction merges each bucket's runs (now three) in order into one file; killed at random
        # moments it leaves the store at the old or the new version (the same answers either way),
        # and the next compact completes it and removes the killed attempt's files.
        runs_before = run_files(store)
        pristine = os.path.join(tmp, "pristine-compact")
        shutil.copytree(store, pristine)
        start = time.perf_counter()
        lifecycle(binary, "store", "compact", "--store", store)
        full = time.perf_counter() - start
        dt = check_layout(store, 8)
        assert count_sum(binary, store) == after
        got, want = sorted_table(dt.to_pyarrow_table()), sorted_table(pq.read_table(src))
        assert got.num_rows == want.num_rows, (got.num_rows, want.num_rows)
        for c in want.column_names:
            assert got.column(c).cast(want.schema.field(c).type).equals(want.column(c)), f"compacted: column {c} differs"
        compact_kills = 0
        for i in range(6):
            shutil.rmtree(store)
            shutil.copytree(pristine, store)
            p = subprocess.Popen([binary, "store", "compact", "--store", store],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(random.uniform(0.0, 1.05 * full))
            p.send_signal(signal.SIGKILL)
            compact_kills += p.wait() == -signal.SIGKILL
            assert count_sum(binary, store) == after, f"compact kill {i}: the store answers differently"
            lifecycle(binary, "store", "compact", "--store", store)
            assert count_sum(binary, store) == after, f"compact kill {i}: the next compact changed the answer"
            check_orphans(store)
            check_layout(store, 8)
        print(f"compact of {runs_before} runs into one file per bucket in {full:.2f} s; killed {compact_kills} of 6 "
              "times mid-way: same answers, the next compact completed it and left no file of the killed attempt")
        # Vacuum deletes the merged runs (kept until then for older versions' readers); the store
        # still reads back the same with delta-rs.
        on_disk = len([f for _, _, fs in os.walk(store) for f in fs if f.endswith(".parquet")])
        out = lifecycle(binary, "store", "vacuum", "--store", store, "--retain-hours", "0").stderr
        left = len([f for _, _, fs in os.walk(store) for f in fs if f.endswith(".parquet")])
        assert left == run_files(store) == 8 and f"deleted {on_disk - 8} file(s)" in out, (on_disk, left, out)
        lists = [f for f in os.listdir(os.path.join(store, "_lifecycle")) if f.startswith("sources-")]
        assert len(lists) == 1, f"superseded source lists left after vacuum: {lists}"
        got = sorted_table(DeltaTable(store).to_pyarrow_table())
        assert got.num_rows == want.num_rows and count_sum(binary, store) == after
        print(f"vacuum: {on_disk - 8} removed run files deleted, {left} left; delta-rs reads the same rows")

        # A sync merges the newest runs (here the three, of similar size) after its commit, also
        # when it has no new file; killed at random moments (during the merge), the store answers
        # the same, and the next sync completes the merge and removes the killed attempt's files.
        merge_cmd = [binary, "store", "sync", "--table", f"purchases={src}", "--store", store]
        shutil.rmtree(store)
        shutil.copytree(pristine, store)
        start = time.perf_counter()
        out = lifecycle(binary, *merge_cmd[1:]).stderr
        full = time.perf_counter() - start
        assert "merged the newest runs of 8 bucket(s)" in out, out
        assert run_files(store) == 8, run_files(store)
        assert count_sum(binary, store) == after
        merge_kills = 0
        for i in range(6):
            shutil.rmtree(store)
            shutil.copytree(pristine, store)
            p = subprocess.Popen(merge_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(random.uniform(0.0, 1.05 * full))
            p.send_signal(signal.SIGKILL)
            merge_kills += p.wait() == -signal.SIGKILL
            assert count_sum(binary, store) == after, f"merge kill {i}: the store answers differently"
            lifecycle(binary, *merge_cmd[1:])
            assert count_sum(binary, store) == after, f"merge kill {i}: the next sync changed the answer"
            assert run_files(store) == 8, f"merge kill {i}: the next sync did not merge"
            check_orphans(store)
            check_layout(store, 8)
        print(f"sync merging 3 runs per bucket in {full:.2f} s; killed {merge_kills} of 6 times mid-way: same "
              "answers, the next sync completed the merge and left no file of the killed attempt")

        # Three syncs at once, five times: one wins, the others lose with a clear error (also when
        # the winner's clean-up removes a loser's files while it is still writing them, and when
        # a loser's file vanishes under the winner's clean-up); the store answers as the files.
        outcomes = {"won": 0, "lost": 0}
        for round in range(5):
            src2 = os.path.join(tmp, f"src2-{round}")
            os.makedirs(src2)
            for p in parts[:2]:
                shutil.copy(os.path.join(data, "purchases", p), src2)
            store2 = os.path.join(tmp, f"store2-{round}")
            lifecycle(binary, "store", "sync", "--table", f"purchases={src2}", "--store", store2)
            for p in parts[2:]:
                shutil.copy(os.path.join(data, "purchases", p), src2)
            procs = [subprocess.Popen([binary, "store", "sync", "--table", f"purchases={src2}", "--store", store2],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
            results = [(p.wait(), p.stderr.read()) for p in procs]
            ok = [r for r in results if r[0] == 0]
            failed = [r for r in results if r[0] != 0]
            assert len(ok) == 1, results
            for code, err in failed:
                assert "another sync or compact committed first" in err, err
            assert count_sum(binary, store2) == count_sum(binary, src2)
            check_orphans(store2)
            outcomes["won"] += len(ok)
            outcomes["lost"] += len(failed)
        print(f"concurrent syncs (3 at once, 5 rounds): {outcomes} (one winner each round, every loser a clear error)")
        pg_serves_a_store_and_follows_its_syncs(binary, data, parts, tmp)
        print("store interop ok")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
