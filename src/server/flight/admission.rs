//! Which Flight SQL connections are served: at most `--max-connections` at once, and each must
//! make an authenticated call within [`FIRST_CALL_TIMEOUT`] of connecting.
//!
//! A connection beyond the limit is still accepted (so the client gets an answer rather than a
//! reset), but every call on it is answered RESOURCE_EXHAUSTED by the interceptor, and it is
//! closed shortly after; at most [`REFUSED_AT_ONCE`] such connections exist at a time, and
//! beyond that a connection is closed at once. A connection that has made no call with valid
//! credentials within [`FIRST_CALL_TIMEOUT`] is closed: connections cost memory before they
//! authenticate, so they must authenticate promptly.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a connection has to make its first authenticated call.
pub const FIRST_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection beyond the limit stays open (for its client to read the refusal).
const REFUSED_LINGER: Duration = Duration::from_secs(2);

/// Connections beyond the limit that are answered at once; more are closed without a word.
pub const REFUSED_AT_ONCE: usize = 64;

/// What the interceptor knows of a connection.
#[derive(Debug)]
struct Known {
    over_limit: bool,
    authenticated: AtomicBool,
}

/// The connections of one listener.
#[derive(Clone)]
pub struct Admission {
    max: usize,
    slots: Arc<Semaphore>,
    refused: Arc<Semaphore>,
    known: Arc<Mutex<HashMap<SocketAddr, Arc<Known>>>>,
}

/// What a connection holds while it is open: its slot (or refusal), its entry, its watchdog.
pub struct Admitted {
    _slot: OwnedSemaphorePermit,
    peer: SocketAddr,
    /// This connection's entry (another connection may later come from the same address).
    entry: Arc<Known>,
    known: Arc<Mutex<HashMap<SocketAddr, Arc<Known>>>>,
    watchdog: tokio::task::JoinHandle<()>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.watchdog.abort();
        if let Ok(mut known) = self.known.lock()
            && known
                .get(&self.peer)
                .is_some_and(|k| Arc::ptr_eq(k, &self.entry))
        {
            known.remove(&self.peer);
        }
    }
}

/// Why a call is not served.
pub enum Refusal {
    TooManyConnections(usize),
}

impl Admission {
    pub fn new(max_connections: usize) -> Self {
        Self {
            max: max_connections.max(1),
            slots: Arc::new(Semaphore::new(max_connections.max(1))),
            refused: Arc::new(Semaphore::new(REFUSED_AT_ONCE)),
            known: Arc::default(),
        }
    }

    /// Admits a new connection, or `None` to close it at once.
    pub fn admit(&self, stream: &TcpStream, peer: SocketAddr) -> Option<Admitted> {
        let (slot, over_limit) = match self.slots.clone().try_acquire_owned() {
            Ok(slot) => (slot, false),
            Err(_) => (self.refused.clone().try_acquire_owned().ok()?, true),
        };
        let known = Arc::new(Known {
            over_limit,
            authenticated: AtomicBool::new(false),
        });
        // A second handle of the socket, to end the connection from here: shutting it down
        // makes the server's reads end, and the connection is dropped.
        let handle = clone_std(stream)?;
        let watched = known.clone();
        let watchdog = tokio::spawn(async move {
            let wait = if watched.over_limit {
                REFUSED_LINGER
            } else {
                FIRST_CALL_TIMEOUT
            };
            tokio::time::sleep(wait).await;
            if watched.over_limit || !watched.authenticated.load(Ordering::Acquire) {
                let _ = handle.shutdown(std::net::Shutdown::Both);
            }
        });
        if let Ok(mut map) = self.known.lock() {
            map.insert(peer, known.clone());
        }
        Some(Admitted {
            _slot: slot,
            peer,
            entry: known,
            known: self.known.clone(),
            watchdog,
        })
    }

    /// Whether a call from `peer` may be served: an error for a connection beyond the limit.
    pub fn check(&self, peer: Option<SocketAddr>) -> Result<(), Refusal> {
        let over = peer
            .and_then(|p| self.known.lock().ok()?.get(&p).map(|k| k.over_limit))
            .unwrap_or(false);
        if over {
            Err(Refusal::TooManyConnections(self.max))
        } else {
            Ok(())
        }
    }

    /// A call from `peer` carried valid credentials: its connection may stay.
    pub fn authenticated(&self, peer: Option<SocketAddr>) {
        if let Some(k) = peer.and_then(|p| self.known.lock().ok()?.get(&p).cloned()) {
            k.authenticated.store(true, Ordering::Release);
        }
    }
}

/// A std handle of the same socket (for shutdown from another task).
fn clone_std(stream: &TcpStream) -> Option<std::net::TcpStream> {
    use std::os::fd::{AsFd, BorrowedFd};
    let fd: BorrowedFd<'_> = stream.as_fd();
    let owned = fd.try_clone_to_owned().ok()?;
    Some(std::net::TcpStream::from(owned))
}
