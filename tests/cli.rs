//! The `lifecycle` command line: batch mode, formats, errors and exit codes, the REPL on piped
//! input, `generate`, and tables from files, directories and globs.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn lifecycle(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lifecycle"))
        .args(args)
        .output()
        .expect("run lifecycle")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `lifecycle generate` into `out`, asserting success.
fn generate(out: &std::path::Path, customers: u64, files: u64, seed: u64) {
    let o = lifecycle(&[
        "generate",
        "--customers",
        &customers.to_string(),
        "--out",
        out.to_str().unwrap(),
        "--files",
        &files.to_string(),
        "--seed",
        &seed.to_string(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn batch_query_on_the_sample() {
    let o = lifecycle(&[
        "sql",
        "--format",
        "csv",
        "-c",
        "SELECT count(*) AS n FROM customers",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "n\n12000\n");
}

#[test]
fn formats() {
    let sql = "SELECT 1 AS a, 'x' AS b UNION ALL SELECT 2, NULL ORDER BY a";
    let o = lifecycle(&["sql", "--format", "json", "-c", sql]);
    assert_eq!(stdout(&o).trim(), r#"[{"a":1,"b":"x"},{"a":2}]"#);
    let o = lifecycle(&["sql", "--format", "ndjson", "-c", sql]);
    assert_eq!(stdout(&o), "{\"a\":1,\"b\":\"x\"}\n{\"a\":2}\n");
    let o = lifecycle(&["sql", "--format", "table", "-c", sql]);
    let out = stdout(&o);
    assert!(out.contains("| a | b |"), "{out}");
    let o = lifecycle(&["sql", "--format", "json", "-c", "SELECT 1 AS a WHERE false"]);
    assert_eq!(stdout(&o).trim(), "[]");
}

#[test]
fn batch_stops_at_first_error_with_one_clear_line() {
    let o = lifecycle(&[
        "sql",
        "--format",
        "csv",
        "-c",
        "SELECT 1 AS one",
        "-c",
        "SELEC 2",
        "-c",
        "SELECT 3 AS three",
    ]);
    assert!(!o.status.success());
    assert!(stdout(&o).contains("one"));
    assert!(!stdout(&o).contains("three"));
    let err = stderr(&o);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.starts_with("Error: "), "{err}");
}

#[test]
fn bad_input_errors_name_the_problem() {
    let cases: [(&[&str], &str); 6] = [
        (&["sql", "-c", "SELECT * FROM nope"], "nope"),
        (
            &["sql", "-c", "SELECT lifecycle_stage('2024-01-01', now())"],
            "must be a TIMESTAMP or DATE, got Utf8",
        ),
        (
            &["sql", "-c", "SELECT churn_flag(order_ts) FROM purchases"],
            "churn_flag takes 6 arguments",
        ),
        (
            &[
                "sql",
                "--table",
                "p=/no/such/file.parquet",
                "-c",
                "SELECT 1",
            ],
            "'/no/such/file.parquet' does not exist",
        ),
        (&["sql", "-c", "\\frobnicate"], "unknown command"),
        (
            &["sql", "--memory-limit", "lots", "-c", "SELECT 1"],
            "invalid memory size 'lots'",
        ),
    ];
    for (args, needle) in cases {
        let o = lifecycle(args);
        assert!(!o.status.success(), "{args:?} should fail");
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn non_parquet_file_is_refused_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("notes.parquet");
    std::fs::write(&f, "this is not parquet").unwrap();
    let spec = format!("p={}", f.display());
    let o = lifecycle(&["sql", "--table", &spec, "-c", "SELECT 1"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("table 'p': ") && err.contains("is not a Parquet file"),
        "{err}"
    );
    // Files that report no size (procfs) or are empty are not empty tables.
    for path in ["/proc/self/environ".to_string(), {
        let e = tmp.path().join("empty.parquet");
        std::fs::write(&e, "").unwrap();
        e.display().to_string()
    }] {
        let spec = format!("x={path}");
        let o = lifecycle(&["sql", "--table", &spec, "-c", "SELECT count(*) FROM x"]);
        assert!(!o.status.success(), "{path}: {}", stdout(&o));
        let err = stderr(&o);
        assert!(
            err.contains("table 'x': ") && err.contains("is not a Parquet file"),
            "{path}: {err}"
        );
    }
}

#[test]
fn script_file_with_commands_and_statements() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("q.sql");
    std::fs::write(
        &f,
        "-- a comment; not a statement end\n\\d\nSET lifecycle.churn_days = 200;\nSHOW lifecycle.churn_days;\nSELECT count(*) AS n\n  FROM purchases\n  WHERE amount > 0\n",
    )
    .unwrap();
    let o = lifecycle(&["sql", "--format", "csv", "-f", f.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("purchases") && out.contains("customers"),
        "{out}"
    );
    assert!(out.contains("lifecycle.churn_days,200"), "{out}");
    assert!(out.contains("\nn\n"), "{out}");
}

/// The interactive shell on the sample, reading piped input.
fn spawn_repl() -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_lifecycle"))
        .args(["sql", "--format", "csv"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn repl_continues_after_errors() {
    let mut child = spawn_repl();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            b"SELECT 40 +\n 2 AS answer;\nSELEC oops;\n\\timing\nSELECT 'still here' AS s;\n\\q\n",
        )
        .unwrap();
    let o = child.wait_with_output().unwrap();
    // Piped input carries on after an error, and the exit status says one failed.
    assert!(!o.status.success());
    let out = stdout(&o);
    assert!(out.contains("answer\n42"), "{out}");
    assert!(out.contains("still here"), "{out}");
    assert!(stderr(&o).contains("Error: "), "{}", stderr(&o));
    assert!(stderr(&o).contains("1 statement failed"), "{}", stderr(&o));
}

/// The shell fed from a pipe, as `printf ... | lifecycle sql` does.
fn piped(input: &[u8]) -> Output {
    let mut child = spawn_repl();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn piped_input_runs_the_last_statement_and_fails_on_bad_input() {
    // A last statement without ';' runs.
    let o = piped(b"SELECT 1 AS a;\nSELECT 2 AS b");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "a\n1\nb\n2\n");
    // An unterminated string is an error, not silently dropped.
    let o = piped(b"SELECT 'unterminated;\n");
    assert!(!o.status.success());
    assert!(stderr(&o).contains("Error: "), "{}", stderr(&o));
    // Binary garbage is an input error with a non-zero exit.
    let o = piped(b"SELECT 1;\n\xff\xfe\x00\x9c garbage\n");
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not UTF-8"), "{}", stderr(&o));
}

#[test]
fn nested_values_are_json_text_in_csv_and_tables() {
    let sql = "SELECT 7 AS id, named_struct('a', 1, 'b', [1, 2], 'c', CAST(NULL AS DOUBLE)) AS s, \
               [named_struct('x', 'y')] AS l, CAST(NULL AS INT[]) AS n";
    let o = lifecycle(&["sql", "--format", "csv", "-c", sql]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "id,s,l,n\n7,\"{\"\"a\"\":1,\"\"b\"\":[1,2],\"\"c\"\":null}\",\"[{\"\"x\"\":\"\"y\"\"}]\",\n"
    );
    let o = lifecycle(&["sql", "-c", sql]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(r#"{"a":1,"b":[1,2],"c":null}"#),
        "{}",
        stdout(&o)
    );
    // The functions that return structs print in CSV too.
    let o = lifecycle(&[
        "sql",
        "--format",
        "csv",
        "-c",
        "SELECT customer_id, rfm_summary(order_ts, amount, TIMESTAMP '2025-01-01') AS s \
         FROM purchases GROUP BY customer_id ORDER BY customer_id LIMIT 2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.starts_with("customer_id,s\n") && out.contains("\"\"frequency\"\":"),
        "{out}"
    );
}

#[test]
fn statements_without_results_print_nothing() {
    for format in ["csv", "table", "json", "ndjson"] {
        let o = lifecycle(&[
            "sql",
            "--format",
            format,
            "-c",
            "SET lifecycle.churn_days = 200; CREATE VIEW v AS SELECT 1 AS x",
        ]);
        assert!(o.status.success(), "{format}: {}", stderr(&o));
        assert_eq!(stdout(&o), "", "{format}");
    }
}

#[test]
fn deep_expressions_are_refused_not_a_crash() {
    let sum = |n: usize| format!("SELECT {} AS s", vec!["1"; n].join("+"));
    let o = lifecycle(&["sql", "--format", "csv", "-c", &sum(1_000)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "s\n1000\n");
    let tmp = tempfile::tempdir().unwrap();
    for n in [10_000, 100_000] {
        // (A 100,000-term statement is longer than one command-line argument may be.)
        let f = tmp.path().join(format!("deep{n}.sql"));
        std::fs::write(&f, sum(n)).unwrap();
        let o = lifecycle(&["sql", "-f", f.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{n} terms: {}", stderr(&o));
        assert!(stderr(&o).contains("too deep"), "{}", stderr(&o));
    }
    // The REPL carries on after refusing one.
    let mut input = sum(100_000).into_bytes();
    input.extend_from_slice(b";\nSELECT 'alive' AS s;\n");
    let o = piped(&input);
    assert!(stdout(&o).contains("alive"), "{}", stderr(&o));
}

#[test]
fn report_as_of_out_of_range_says_so() {
    let o = lifecycle(&["report", "cohort", "--as-of", "1600-01-01"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("outside the range reports support"),
        "{}",
        stderr(&o)
    );
    let o = lifecycle(&["report", "cohort", "--as-of", "yesterday-ish"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("is not a date or timestamp"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn generate_then_query_files_directories_and_globs() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("data");
    generate(&out, 2000, 3, 5);
    let files: Vec<_> = std::fs::read_dir(out.join("purchases")).unwrap().collect();
    assert_eq!(files.len(), 3);
    let dir = format!("purchases={}", out.join("purchases").display());
    let glob = format!("purchases={}/purchases/*.parquet", out.display());
    let one = format!("purchases={}/purchases/part-00000.parquet", out.display());
    let count = |spec: &str| {
        let o = lifecycle(&[
            "sql",
            "--format",
            "csv",
            "--table",
            spec,
            "-c",
            "SELECT count(DISTINCT customer_id) AS n FROM purchases",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o).lines().nth(1).unwrap().parse::<u64>().unwrap()
    };
    let all = count(&dir);
    assert_eq!(all, count(&glob));
    assert!(count(&one) < all);
    // Same seed, same data.
    let again = tmp.path().join("again");
    generate(&again, 2000, 3, 5);
    let sum = |d: &std::path::Path| {
        let spec = format!("purchases={}", d.join("purchases").display());
        stdout(&lifecycle(&[
            "sql",
            "--format",
            "csv",
            "--table",
            &spec,
            "-c",
            "SELECT count(*), sum(CAST(round(amount * 100) AS BIGINT)), max(order_ts) FROM purchases",
        ]))
    };
    assert_eq!(sum(&out), sum(&again));
}

/// `(min, max, sorted)` of the timestamp column `col` of one Parquet file, in file order.
fn time_span(file: &std::path::Path, col: &str) -> (i64, i64, bool) {
    use datafusion::arrow::array::{Array, TimestampMicrosecondArray};
    let f = std::fs::File::open(file).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap();
    let (mut lo, mut hi, mut sorted, mut prev) = (i64::MAX, i64::MIN, true, i64::MIN);
    for b in reader {
        let b = b.unwrap();
        let ts = b.column_by_name(col).unwrap();
        let ts = ts
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        for i in 0..ts.len() {
            let t = ts.value(i);
            sorted &= t >= prev;
            prev = t;
            lo = lo.min(t);
            hi = hi.max(t);
        }
    }
    (lo, hi, sorted)
}

#[test]
fn generate_layouts_hold_the_same_rows_in_time_or_customer_order() {
    let tmp = tempfile::tempdir().unwrap();
    let (time, customer) = (tmp.path().join("time"), tmp.path().join("customer"));
    let run = |out: &std::path::Path, layout: &str, extra: &[&str]| {
        let mut args = vec![
            "generate",
            "--customers",
            "3000",
            "--files",
            "3",
            "--seed",
            "9",
            "--layout",
            layout,
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let o = lifecycle(&args);
        assert!(o.status.success(), "{}", stderr(&o));
    };
    // A tiny memory limit: the time sort spills and still succeeds.
    run(&time, "time", &["--memory-limit", "40M"]);
    run(&customer, "customer", &[]);
    assert!(!time.join(".generate-scratch").exists());
    for (table, col) in [("purchases", "order_ts"), ("events", "event_ts")] {
        // Same rows, whatever the layout.
        let spec = |d: &std::path::Path, n: &str| format!("{n}={}", d.join(table).display());
        let o = lifecycle(&[
            "sql",
            "--format",
            "csv",
            "--table",
            &spec(&time, "a"),
            "--table",
            &spec(&customer, "b"),
            "-c",
            "SELECT (SELECT count(*) FROM a) AS n, \
                    (SELECT count(*) FROM (SELECT * FROM a EXCEPT ALL SELECT * FROM b)) AS a_only, \
                    (SELECT count(*) FROM (SELECT * FROM b EXCEPT ALL SELECT * FROM a)) AS b_only",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let out = stdout(&o);
        let row: Vec<u64> = out
            .lines()
            .nth(1)
            .unwrap()
            .split(',')
            .map(|v| v.parse().unwrap())
            .collect();
        assert!(row[0] > 1000, "{table}: {out}");
        assert_eq!((row[1], row[2]), (0, 0), "{table}: {out}");
        // Time layout: each file sorted, file K before file K+1; customer layout is not.
        let spans: Vec<_> = (0..3)
            .map(|k| time_span(&time.join(table).join(format!("part-{k:05}.parquet")), col))
            .collect();
        assert!(spans.iter().all(|s| s.2), "{table}: {spans:?}");
        assert!(
            spans.windows(2).all(|w| w[0].1 <= w[1].0),
            "{table}: {spans:?}"
        );
        let first = time_span(&customer.join(table).join("part-00000.parquet"), col);
        assert!(
            !first.2,
            "{table}: customer layout is ordered by customer, not time"
        );
    }
}

#[test]
fn memory_limit_spills_instead_of_failing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("data");
    generate(&out, 60_000, 2, 42);
    let spec = format!("purchases={}", out.join("purchases").display());
    let o = lifecycle(&[
        "sql", "--format", "csv", "--memory-limit", "8M", "--table", &spec, "-c",
        "SELECT count(*) AS n FROM (SELECT customer_id, lifecycle_stage(order_ts, TIMESTAMP '2025-01-01 00:00:00') AS s,
                count(*) AS k, sum(amount) AS a FROM purchases GROUP BY customer_id ORDER BY a DESC)",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn the_function_reference_is_generated_from_the_docs() {
    let o = lifecycle(&["docs"]);
    assert!(o.status.success());
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/functions.md")).unwrap();
    let begin = "<!-- BEGIN FUNCTION REFERENCE -->\n";
    let section = &readme[readme.find(begin).unwrap() + begin.len()
        ..readme.find("<!-- END FUNCTION REFERENCE -->").unwrap()];
    assert_eq!(
        section,
        stdout(&o),
        "docs/functions.md is stale: regenerate it with `cargo run -- docs`"
    );
    for f in [
        "period_diff",
        "period_start",
        "retention",
        "lifecycle_stage",
        "churn_flag",
        "cohort_retention",
    ] {
        assert!(section.contains(&format!("### `{f}`")), "{f} documented");
    }
}

#[test]
fn ctrl_c_cancels_the_running_query_not_the_shell() {
    let mut child = spawn_repl();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(
            b"SELECT sum(a.value * b.value) FROM range(200000) a CROSS JOIN range(200000) b;\n",
        )
        .unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(3000));
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    std::thread::sleep(std::time::Duration::from_millis(300));
    stdin.write_all(b"SELECT 'alive' AS s;\n\\q\n").unwrap();
    drop(stdin);
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("Query cancelled."), "{}", stderr(&o));
    assert!(stdout(&o).contains("alive"), "{}", stdout(&o));
}

#[test]
fn serve_warns_on_a_non_loopback_address_without_a_token() {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_lifecycle"))
        .args(["serve", "--listen", "0.0.0.0:0"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("start server");
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = vec![];
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.contains("listening on");
        seen.push(line);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = seen.join("\n");
    assert!(
        text.contains("warning") && text.contains("without --token-file"),
        "{text}"
    );
}

#[test]
fn serve_refuses_bad_setup_with_one_clear_line() {
    let o = lifecycle(&["serve", "--token-file", "/no/such/token"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cannot read token file '/no/such/token'"),
        "{}",
        stderr(&o)
    );
    let o = lifecycle(&[
        "serve",
        "--tls-cert",
        "/no/cert.pem",
        "--tls-key",
        "/no/key.pem",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("/no/cert.pem"), "{}", stderr(&o));
    let o = lifecycle(&["serve", "--tls-cert", "/no/cert.pem"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--tls-key"), "{}", stderr(&o));
    let o = lifecycle(&["serve", "--max-concurrent-queries", "0"]);
    assert!(!o.status.success());
}

#[test]
fn table_output_shows_a_row_cap_and_says_so() {
    let o = lifecycle(&[
        "sql",
        "--max-rows",
        "3",
        "-c",
        "SELECT value FROM generate_series(1, 5) ORDER BY value",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("| 3     |") && !out.contains("| 4     |"),
        "{out}"
    );
    assert!(out.contains("(3 of 5 rows shown"), "{out}");
    // A result far larger than the cap is not buffered: two million rows, ten thousand shown.
    let o = lifecycle(&["sql", "-c", "SELECT * FROM generate_series(1, 2000000)"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("(10000 of 2000000 rows shown"),
        "{}",
        stdout(&o).lines().last().unwrap_or("")
    );
    // Other formats stream every row; 0 means no cap.
    let o = lifecycle(&[
        "sql",
        "--format",
        "csv",
        "--max-rows",
        "3",
        "-c",
        "SELECT value FROM generate_series(1, 5)",
    ]);
    assert_eq!(stdout(&o).lines().count(), 6);
    let o = lifecycle(&[
        "sql",
        "--max-rows",
        "0",
        "-c",
        "SELECT value FROM generate_series(1, 5)",
    ]);
    assert!(!stdout(&o).contains("rows shown"), "{}", stdout(&o));
}
