//! `lifecycle serve` with a real Flight SQL client (arrow-flight's `FlightSqlServiceClient`) on an
//! ephemeral loopback port.

use std::net::SocketAddr;
use std::sync::Arc;

use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{CommandGetDbSchemas, CommandGetTables};
use datafusion::arrow::array::{Array, Int64Array, RecordBatch, StringArray};
use futures::TryStreamExt;
use lifecycle::server::{ServeOptions, serve};
use tonic::transport::Channel;

use crate::common::{rows, session};

async fn start(token: Option<&str>) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let ctx = session(2, &[]).await;
    let (tx_addr, rx_addr) = tokio::sync::oneshot::channel();
    let (tx_stop, rx_stop) = tokio::sync::oneshot::channel::<()>();
    let opts = ServeOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        token: token.map(str::to_string),
        tls: None,
        max_concurrent_queries: 4,
    };
    tokio::spawn(async move {
        serve(ctx, opts, Some(tx_addr), async {
            let _ = rx_stop.await;
        })
        .await
        .expect("server");
    });
    (rx_addr.await.unwrap(), tx_stop)
}

async fn client(addr: SocketAddr) -> FlightSqlServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    FlightSqlServiceClient::new(channel)
}

/// Runs a statement and collects every endpoint's batches.
async fn run(
    c: &mut FlightSqlServiceClient<Channel>,
    sql: &str,
) -> Result<Vec<RecordBatch>, String> {
    let info = c
        .execute(sql.to_string(), None)
        .await
        .map_err(|e| e.to_string())?;
    collect(c, info).await
}

async fn collect(
    c: &mut FlightSqlServiceClient<Channel>,
    info: arrow_flight::FlightInfo,
) -> Result<Vec<RecordBatch>, String> {
    let mut out = vec![];
    for ep in info.endpoint {
        let stream = c
            .do_get(ep.ticket.unwrap())
            .await
            .map_err(|e| e.to_string())?;
        let batches: Vec<RecordBatch> = stream.try_collect().await.map_err(|e| e.to_string())?;
        out.extend(batches);
    }
    Ok(out)
}

const STAGES: &str = "SELECT stage, count(*) AS n FROM (
    SELECT lifecycle_stage(p.order_ts, TIMESTAMP '2025-01-01 00:00:00') AS stage
    FROM customers c LEFT JOIN purchases p ON p.customer_id = c.customer_id GROUP BY c.customer_id)
  GROUP BY stage ORDER BY stage";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_prepared_statements_catalogs_and_errors() {
    let (addr, stop) = start(None).await;
    let mut c = client(addr).await;

    // A query with lifecycle_stage equals the same query run in-process.
    let got = rows(&run(&mut c, STAGES).await.unwrap());
    let local = session(2, &[]).await;
    assert_eq!(got, crate::common::query(&local, STAGES).await);
    assert_eq!(got.len(), 7);

    // A ticket is self-contained: a new connection can redeem it.
    let info = c
        .execute("SELECT count(*) AS n FROM customers".into(), None)
        .await
        .unwrap();
    let mut other = client(addr).await;
    assert_eq!(
        rows(&collect(&mut other, info).await.unwrap()),
        vec![vec!["12000"]]
    );

    // Prepared statement with a bound parameter.
    let mut ps = c
        .prepare(
            "SELECT count(*) AS n FROM purchases WHERE customer_id = $1".into(),
            None,
        )
        .await
        .unwrap();
    let param = RecordBatch::try_from_iter(vec![("$1", Arc::new(Int64Array::from(vec![42])) as _)])
        .unwrap();
    ps.set_parameters(param).unwrap();
    let info = ps.execute().await.unwrap();
    let got = rows(&collect(&mut c, info).await.unwrap());
    let want = crate::common::query(
        &local,
        "SELECT count(*) AS n FROM purchases WHERE customer_id = 42",
    )
    .await;
    assert_eq!(got, want);
    ps.close().await.unwrap();

    // Catalog browsing.
    let info = c.get_catalogs().await.unwrap();
    let cats = collect(&mut c, info).await.unwrap();
    assert!(rows(&cats).iter().any(|r| r[0] == "datafusion"));
    let info = c
        .get_db_schemas(CommandGetDbSchemas {
            catalog: None,
            db_schema_filter_pattern: None,
        })
        .await
        .unwrap();
    assert!(
        rows(&collect(&mut c, info).await.unwrap())
            .iter()
            .any(|r| r[1] == "public")
    );
    let info = c
        .get_tables(CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: None,
            table_name_filter_pattern: Some("purch%".into()),
            table_types: vec![],
            include_schema: true,
        })
        .await
        .unwrap();
    let tables = collect(&mut c, info).await.unwrap();
    assert_eq!(tables.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    let names = tables[0]
        .column(2)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    assert_eq!(names.value(0), "purchases");
    assert_eq!(tables[0].num_columns(), 5, "table_schema column included");
    let info = c.get_table_types().await.unwrap();
    assert!(!collect(&mut c, info).await.unwrap().is_empty());
    let info = c.get_sql_info(vec![]).await.unwrap();
    assert!(collect(&mut c, info).await.unwrap()[0].num_rows() > 5);
    let info = c
        .get_xdbc_type_info(arrow_flight::sql::CommandGetXdbcTypeInfo { data_type: None })
        .await
        .unwrap();
    assert!(collect(&mut c, info).await.unwrap()[0].num_rows() >= 5);

    // A bad statement errors for that client; the server keeps serving.
    let err = run(&mut c, "SELEC nonsense").await.unwrap_err();
    assert!(
        err.contains("SQL error") || err.contains("Expected"),
        "{err}"
    );
    let err = run(&mut c, "SELECT * FROM no_such_table")
        .await
        .unwrap_err();
    assert!(err.contains("no_such_table"), "{err}");
    // Read-only: DDL, COPY and SET are refused.
    for sql in [
        "CREATE TABLE t AS SELECT 1",
        "COPY (SELECT 1) TO '/tmp/x.parquet'",
        "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '/etc'",
        "SET lifecycle.churn_days = 10",
        "DROP TABLE purchases",
    ] {
        let err = run(&mut c, sql).await.unwrap_err();
        assert!(err.contains("read-only"), "{sql}: {err}");
    }
    assert_eq!(
        rows(&run(&mut c, "SELECT 1 AS one").await.unwrap()),
        vec![vec!["1"]]
    );
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_auth() {
    let (addr, stop) = start(Some("s3cret")).await;
    let mut c = client(addr).await;
    let err = run(&mut c, "SELECT 1").await.unwrap_err();
    assert!(
        err.contains("Unauthenticated") || err.contains("credentials"),
        "{err}"
    );
    assert!(c.get_catalogs().await.is_err());
    c.set_token("wrong".into());
    assert!(run(&mut c, "SELECT 1").await.is_err());
    c.set_token("s3cret".into());
    assert_eq!(
        rows(&run(&mut c, "SELECT 1 AS one").await.unwrap()),
        vec![vec!["1"]]
    );
    // Handshake with user/password (the password is the token), as ADBC's username/password do.
    let mut h = client(addr).await;
    assert!(h.handshake("analyst", "wrong").await.is_err());
    let mut h = client(addr).await;
    h.handshake("analyst", "s3cret").await.unwrap();
    assert_eq!(
        rows(&run(&mut h, "SELECT 2 AS two").await.unwrap()),
        vec![vec!["2"]]
    );
    let _ = stop.send(());
}
