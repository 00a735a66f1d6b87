//! What every query runs within, on either protocol.

use std::sync::Arc;

use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::{SessionState, SessionStateBuilder};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::stream;

/// What every query runs within, on either protocol: one of `--max-concurrent-queries` permits,
/// and its own memory pool of `--memory-limit / --max-concurrent-queries` bytes, so one query
/// over its share fails alone instead of starving the others.
#[derive(Clone)]
pub struct QueryLimits {
    permits: Arc<Semaphore>,
    slots: usize,
    query_memory: Option<usize>,
    /// What an out-of-memory error adds: that the pool it names is the query's share.
    memory_share: Arc<Option<String>>,
    /// The longest statement a client may send, in bytes.
    pub(crate) max_statement_bytes: usize,
    /// The slots lent to results, taken back from results left unread.
    pub(crate) leases: Arc<stream::Leases>,
}

impl QueryLimits {
    pub fn new(
        max_concurrent_queries: usize,
        memory_limit: Option<usize>,
        max_statement_bytes: usize,
        idle_result_timeout: std::time::Duration,
    ) -> Self {
        let slots = max_concurrent_queries.max(1);
        let query_memory = memory_limit.map(|m| (m / slots).max(1));
        let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
        let memory_share = memory_limit.zip(query_memory).map(|(m, q)| {
            format!(
                "each query may use {:.1} MiB: --memory-limit {:.1} MiB divided by \
                 --max-concurrent-queries {slots}",
                mib(q),
                mib(m)
            )
        });
        Self {
            permits: Arc::new(Semaphore::new(slots)),
            slots,
            query_memory,
            memory_share: Arc::new(memory_share),
            max_statement_bytes,
            leases: stream::Leases::new(idle_result_timeout),
        }
    }

    /// Waits for a query slot, held for as long as the permit (planning).
    pub(crate) async fn permit(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().acquire_owned().await.ok()
    }

    /// Waits for `n` query slots at once (one per statement of a request whose statements all
    /// start together), lent to the request's results; `None` when the server is shutting down.
    /// More statements than the server has slots are refused by the caller before this.
    pub(crate) async fn lease(&self, n: usize) -> Option<Arc<stream::Lease>> {
        let n = n.clamp(1, self.slots) as u32;
        let permit = self.permits.clone().acquire_many_owned(n).await.ok()?;
        Some(self.leases.lend(permit))
    }

    /// How many slots the server has.
    pub(crate) fn slots(&self) -> usize {
        self.slots
    }

    /// Waits until no query runs, for at most `max`.
    pub(crate) async fn idle(&self, max: std::time::Duration) {
        let _ = tokio::time::timeout(max, self.permits.acquire_many(self.slots as u32)).await;
    }

    /// `base` with a memory pool of one query's share, when the server has a memory limit
    /// (spill files, caches and object stores stay shared).
    pub(crate) fn state(&self, base: SessionState) -> datafusion::error::Result<SessionState> {
        let Some(bytes) = self.query_memory else {
            return Ok(base);
        };
        let runtime = RuntimeEnvBuilder::from_runtime_env(base.runtime_env())
            .with_memory_pool(Arc::new(FairSpillPool::new(bytes)))
            .build_arc()?;
        let state = SessionStateBuilder::new_from_existing(base)
            .with_runtime_env(runtime)
            .build();
        // Aggregates fan out as far as the query's share allows.
        Ok(
            crate::engine::fanout_aggregate::FanoutAggregates::with_memory_limit(
                state,
                Some(bytes),
            ),
        )
    }

    /// The note an out-of-memory error gets: the pool it names is the query's share.
    pub(crate) fn memory_note(&self) -> Option<&str> {
        self.memory_share.as_deref()
    }
}
