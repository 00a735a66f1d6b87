//! The guard around each result stream, on both protocols: it holds the query's slot (a
//! [`Lease`]) and logs one line when the stream ends or the client goes away.
//!
//! A slot is the server's to lend, not the client's to keep: a result the client stops reading
//! (a Postgres portal suspended after `max_rows`, a cursor left open, a client that no longer
//! reads its socket) gives its slot back once it has waited [`Leases`]' idle timeout for the
//! client, and the stream then ends with an error if the client comes back for it. A query
//! that is computing is never idle: the client is waiting for it.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

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

/// The consumer is waiting for the stream's next item (the stream returned `Pending`).
const WAITING: u64 = u64::MAX;

/// A query's hold on its slot(s) (see the module docs).
pub struct Lease {
    permit: Mutex<Option<OwnedSemaphorePermit>>,
    /// Milliseconds since the registry's epoch at which the consumer last received an item, or
    /// [`WAITING`] while it waits for one.
    since: AtomicU64,
    expired: AtomicBool,
    epoch: Instant,
}

impl Lease {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The consumer waits for the next item.
    fn waiting(&self) {
        self.since.store(WAITING, Ordering::Release);
    }

    /// The consumer received an item; it is up to it to ask for the next.
    fn delivered(&self) {
        self.since.store(self.now(), Ordering::Release);
    }

    /// Whether the slot was taken back (the result was left unread).
    pub(super) fn expired(&self) -> bool {
        self.expired.load(Ordering::Acquire)
    }
}

/// Every lease the server has lent, and the task that takes back idle ones.
pub struct Leases {
    all: Mutex<Vec<Weak<Lease>>>,
    epoch: Instant,
    idle: Duration,
}

impl Leases {
    pub fn new(idle: Duration) -> Arc<Self> {
        Arc::new(Self {
            all: Mutex::default(),
            epoch: Instant::now(),
            idle,
        })
    }

    /// A lease of `permit`.
    pub(super) fn lend(&self, permit: OwnedSemaphorePermit) -> Arc<Lease> {
        // The idle clock starts now: a result no one has asked rows of yet (a cursor just
        // declared, a portal just bound) is as unread as one whose reader stopped.
        let lease = Arc::new(Lease {
            permit: Mutex::new(Some(permit)),
            since: AtomicU64::new(self.epoch.elapsed().as_millis() as u64),
            expired: AtomicBool::new(false),
            epoch: self.epoch,
        });
        if let Ok(mut all) = self.all.lock() {
            all.push(Arc::downgrade(&lease));
        }
        lease
    }

    /// Takes back the slots of results left unread longer than the idle timeout; forgets the
    /// leases that ended.
    pub(super) fn reap(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        let idle = self.idle.as_millis() as u64;
        let Ok(mut all) = self.all.lock() else {
            return;
        };
        all.retain(|weak| {
            let Some(lease) = weak.upgrade() else {
                return false;
            };
            let since = lease.since.load(Ordering::Acquire);
            if since != WAITING && now.saturating_sub(since) > idle {
                if let Ok(mut permit) = lease.permit.lock() {
                    permit.take();
                }
                lease.expired.store(true, Ordering::Release);
                return false;
            }
            true
        });
    }

    /// Reaps every second, for as long as the server runs.
    pub(super) fn spawn_reaper(self: &Arc<Self>) {
        let leases = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                match leases.upgrade() {
                    Some(l) => l.reap(),
                    None => return,
                }
            }
        });
    }
}

/// A result stream that holds the query's lease and logs one line when it ends or is dropped.
/// The lease is shared when one request runs several statements (a Postgres simple query).
pub(super) struct Tracked<T, E> {
    inner: Pin<Box<dyn Stream<Item = Result<T, E>> + Send>>,
    lease: Arc<Lease>,
    /// The error the stream ends with when its lease was taken back.
    expired: fn(Duration) -> E,
    idle: Duration,
    protocol: &'static str,
    client: String,
    sql: String,
    started: Instant,
    rows: usize,
    outcome: &'static str,
    ended: bool,
}

impl<T, E> Tracked<T, E> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        inner: Pin<Box<dyn Stream<Item = Result<T, E>> + Send>>,
        lease: Arc<Lease>,
        leases: &Leases,
        expired: fn(Duration) -> E,
        protocol: &'static str,
        client: String,
        sql: &str,
    ) -> Self {
        Self {
            inner,
            lease,
            expired,
            idle: leases.idle,
            protocol,
            client,
            sql: first_chars(sql),
            started: Instant::now(),
            rows: 0,
            outcome: "cancelled",
            ended: false,
        }
    }
}

impl<T: Rows, E> Stream for Tracked<T, E> {
    type Item = Result<T, E>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if self.lease.expired() {
            // Its slot was taken back while the client left it unread: the query is over.
            self.ended = true;
            self.outcome = "expired";
            let idle = self.idle;
            return Poll::Ready(Some(Err((self.expired)(idle))));
        }
        let p = self.inner.as_mut().poll_next(cx);
        match &p {
            Poll::Ready(Some(Ok(b))) => {
                self.rows += b.rows();
                self.lease.delivered();
            }
            Poll::Ready(Some(Err(_))) => {
                self.outcome = "error";
                self.lease.delivered();
            }
            Poll::Ready(None) => {
                if self.outcome == "cancelled" {
                    self.outcome = "ok";
                }
                self.lease.delivered();
            }
            Poll::Pending => self.lease.waiting(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unread_result_gives_its_slot_back_and_a_waiting_one_keeps_it() {
        let slots = Arc::new(tokio::sync::Semaphore::new(2));
        let leases = Leases::new(Duration::from_millis(50));
        let unread = leases.lend(slots.clone().acquire_owned().await.unwrap());
        let waiting = leases.lend(slots.clone().acquire_owned().await.unwrap());
        unread.delivered();
        waiting.waiting();
        tokio::time::sleep(Duration::from_millis(80)).await;
        leases.reap();
        assert!(unread.expired() && !waiting.expired());
        assert_eq!(
            slots.available_permits(),
            1,
            "the unread result's slot is back"
        );
    }
}
