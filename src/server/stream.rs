//! The guard around each result stream: it holds the query's concurrency permit and logs one
//! line when the stream ends or the client goes away.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use arrow_flight::error::FlightError;
use datafusion::arrow::array::RecordBatch;
use futures::Stream;
use tokio::sync::OwnedSemaphorePermit;
use tonic::Status;

pub(super) type DoGetStream =
    Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send>>;

/// A result stream that holds the query's permit and logs one line when it ends or is dropped.
pub(super) struct Tracked {
    pub(super) inner: Pin<Box<dyn Stream<Item = Result<RecordBatch, FlightError>> + Send>>,
    pub(super) _permit: OwnedSemaphorePermit,
    pub(super) client: String,
    pub(super) sql: String,
    pub(super) started: Instant,
    pub(super) rows: usize,
    pub(super) outcome: &'static str,
}

impl Stream for Tracked {
    type Item = Result<RecordBatch, FlightError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let p = self.inner.as_mut().poll_next(cx);
        match &p {
            Poll::Ready(Some(Ok(b))) => self.rows += b.num_rows(),
            Poll::Ready(Some(Err(_))) => self.outcome = "error",
            Poll::Ready(None) if self.outcome == "cancelled" => self.outcome = "ok",
            _ => {}
        }
        p
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        eprintln!(
            "query client={} rows={} duration={:.3}s outcome={} sql={:?}",
            self.client,
            self.rows,
            self.started.elapsed().as_secs_f64(),
            self.outcome,
            self.sql
        );
    }
}

pub(super) fn first_chars(sql: &str) -> String {
    let one_line: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    one_line.chars().take(100).collect()
}
