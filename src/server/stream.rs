//! The guard around each result stream, on both protocols: it holds the query's concurrency
//! permit and logs one line when the stream ends or the client goes away.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use datafusion::arrow::array::RecordBatch;
use futures::Stream;
use tokio::sync::OwnedSemaphorePermit;
use tonic::Status;

pub(super) type DoGetStream =
    Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send>>;

/// What a result stream yields, and how many rows each item is.
pub(super) trait Rows {
    fn rows(&self) -> usize;
}

impl Rows for RecordBatch {
    fn rows(&self) -> usize {
        self.num_rows()
    }
}

impl Rows for datafusion_postgres::pgwire::messages::data::DataRow {
    fn rows(&self) -> usize {
        1
    }
}

/// A result stream that holds the query's permit and logs one line when it ends or is dropped.
/// The permit is shared when one request runs several statements (a Postgres simple query).
pub(super) struct Tracked<T, E> {
    pub(super) inner: Pin<Box<dyn Stream<Item = Result<T, E>> + Send>>,
    pub(super) _permit: Arc<OwnedSemaphorePermit>,
    pub(super) protocol: &'static str,
    pub(super) client: String,
    pub(super) sql: String,
    pub(super) started: Instant,
    pub(super) rows: usize,
    pub(super) outcome: &'static str,
}

impl<T, E> Tracked<T, E> {
    pub(super) fn new(
        inner: Pin<Box<dyn Stream<Item = Result<T, E>> + Send>>,
        permit: Arc<OwnedSemaphorePermit>,
        protocol: &'static str,
        client: String,
        sql: &str,
    ) -> Self {
        Self {
            inner,
            _permit: permit,
            protocol,
            client,
            sql: first_chars(sql),
            started: Instant::now(),
            rows: 0,
            outcome: "cancelled",
        }
    }
}

impl<T: Rows, E> Stream for Tracked<T, E> {
    type Item = Result<T, E>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let p = self.inner.as_mut().poll_next(cx);
        match &p {
            Poll::Ready(Some(Ok(b))) => self.rows += b.rows(),
            Poll::Ready(Some(Err(_))) => self.outcome = "error",
            Poll::Ready(None) if self.outcome == "cancelled" => self.outcome = "ok",
            _ => {}
        }
        p
    }
}

impl<T, E> Drop for Tracked<T, E> {
    fn drop(&mut self) {
        eprintln!(
            "query protocol={} client={} rows={} duration={:.3}s outcome={} sql={:?}",
            self.protocol,
            self.client,
            self.rows,
            self.started.elapsed().as_secs_f64(),
            self.outcome,
            self.sql
        );
    }
}

fn first_chars(sql: &str) -> String {
    let one_line: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    one_line.chars().take(100).collect()
}
