//! A Postgres connection's life, from accept to close, bounded at every step.
//!
//! pgwire's own `process_socket` is replaced by this loop, built from pgwire's public pieces
//! (`negotiate_tls`, `process_message`, `process_error`), because what a hostile client can do
//! before and after authenticating must be bounded here, not trusted to the client:
//!
//! - **Connections**: at most `--max-connections` at once. Beyond it a client gets PostgreSQL's
//!   answer (SQLSTATE 53300 "sorry, too many clients already", after its startup message; a
//!   cancel request is still served), from a small pool of refusers; past that pool the socket
//!   is closed at once.
//! - **Authentication** ends within [`AUTH_TIMEOUT`] or the connection is closed; any message
//!   other than the startup and password messages before it ends is answered with a FATAL
//!   error at once (PostgreSQL's 08P01), as is a malformed message; after a FATAL error the
//!   connection is closed, never left reading (pgwire's loop kept reading, and ran a query that
//!   followed a failed password). A failed password is answered only after a delay that grows
//!   with the recent failures from the client's address ([`AuthDelays`], PostgreSQL's
//!   `auth_delay` idea).
//! - **The session** (the connection's copy of the server's settings, its planner) is built
//!   only once the client has authenticated and sends its first statement; an idle connection
//!   costs its socket buffers.
//! - **Messages** longer than the statement limit plus a margin are refused before they are
//!   read whole (pgwire accepts 1 GiB), and the connection closed; statements over the limit
//!   but within the margin get an ordinary error (54000) and the connection goes on.
//! - **Hang-ups**: a task watches the socket and stops the connection's running query when the
//!   client goes away; it ends with the connection, panics included.

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use datafusion_postgres::pgwire;
use futures::{SinkExt, StreamExt};
use pgwire::api::{ClientInfo, ErrorHandler, PgWireConnectionState, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::server::{
    MaybeTls, PgWireMessageServerCodec, negotiate_tls, process_error, process_message,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::codec::Framed;

use super::{Interrupt, PgFront, PgStatement, Stop};
use crate::engine::errors::error_line;

/// How long a client has, from accept, to authenticate.
pub(super) const AUTH_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest message a client may send before it has authenticated (startup and password
/// messages are a few hundred bytes).
const MAX_AUTH_MESSAGE_BYTES: usize = 64 << 10;

/// How much longer than `--max-statement-bytes` a message may be (a Parse carries a name and
/// parameter types, a Bind its values) before the connection is refused rather than the
/// statement.
const MESSAGE_MARGIN_BYTES: usize = 64 << 10;

/// Over-limit connections answered with 53300 at once; more are closed without a word.
const REFUSERS: usize = 64;

/// How long a refused client has to send its startup message.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a connection checks that its client is still there.
const HANGUP_CHECK: Duration = Duration::from_millis(250);

type Socket = Framed<MaybeTls, PgWireMessageServerCodec<PgStatement>>;

impl PgFront {
    /// Accepts connections until `stop` resolves; each runs on its own task. Then, no longer
    /// accepting, waits for `drain` (queries in flight finishing) and closes every connection
    /// still open.
    pub(in crate::server) async fn run(
        self,
        listener: TcpListener,
        max_connections: usize,
        stop: impl std::future::Future<Output = ()>,
        drain: impl std::future::Future<Output = ()>,
    ) {
        let front = Arc::new(self);
        let slots = Arc::new(Semaphore::new(max_connections.max(1)));
        let refusers = Arc::new(Semaphore::new(REFUSERS));
        let mut connections = tokio::task::JoinSet::new();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                accepted = listener.accept() => {
                    let (socket, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of file descriptors and the like: keep serving the others.
                            log::warn!("postgres listener: accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = socket.set_nodelay(true);
                    match slots.clone().try_acquire_owned() {
                        Ok(slot) => {
                            connections.spawn(connection(front.clone(), socket, peer, slot));
                        }
                        Err(_) => match refusers.clone().try_acquire_owned() {
                            Ok(refuser) => {
                                connections.spawn(refuse(front.clone(), socket, refuser));
                            }
                            Err(_) => drop(socket),
                        },
                    }
                }
                // Reap finished connections as they end, so the set does not grow.
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        drop(listener);
        drain.await;
        connections.shutdown().await;
    }
}

/// A task that is aborted when this is dropped (the connection's end, a panic included).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One connection, holding one of the listener's slots until it ends.
async fn connection(
    front: Arc<PgFront>,
    socket: TcpStream,
    peer: SocketAddr,
    _slot: OwnedSemaphorePermit,
) {
    let interrupt = Interrupt::new();
    let (socket, watcher) = match watch_for_hangup(socket, interrupt.clone()) {
        Ok(s) => s,
        Err(e) => {
            log::warn!("postgres connection from {peer}: {e}");
            return;
        }
    };
    let _watcher = AbortOnDrop(tokio::spawn(watcher));
    let deadline = Instant::now() + AUTH_TIMEOUT;
    let negotiated = tokio::time::timeout_at(
        deadline,
        negotiate_tls::<PgStatement>(socket, front.tls.clone()),
    )
    .await;
    let Ok(Ok(Some(mut socket))) = negotiated else {
        return;
    };
    if !authenticate(&front, &mut socket, peer, deadline).await {
        return;
    }
    if let Err(e) = serve(&front, &mut socket, interrupt).await {
        log::info!("postgres connection from {peer} ended: {e}");
    }
}

/// Sends `error` as FATAL and closes the connection (PostgreSQL sends no ReadyForQuery after a
/// FATAL error).
async fn fatal(socket: &mut Socket, mut error: ErrorInfo) {
    error.severity = "FATAL".into();
    let _ = socket
        .send(PgWireBackendMessage::ErrorResponse(error.into()))
        .await;
    let _ = socket.close().await;
}

fn protocol_violation(message: impl Into<String>) -> ErrorInfo {
    ErrorInfo::new("FATAL".into(), "08P01".into(), message.into())
}

/// Why reading a message failed.
enum ReadError {
    /// The message is longer than allowed (its declared or buffered length).
    TooLong(usize),
    /// A typed message that declares a length over the limit, not yet read: its type byte and
    /// its whole length (type byte included).
    Oversized { kind: u8, total: usize },
    /// A malformed message (pgwire's decoding error).
    Malformed(String),
}

/// The next message, refused as soon as its length is known to be over `max` bytes (its
/// declared length, once its header has arrived, or what is buffered), rather than once it has
/// been read whole. `None` when the client has closed the connection.
async fn next_message(
    socket: &mut Socket,
    max: usize,
) -> Option<Result<PgWireFrontendMessage, ReadError>> {
    let typed = !matches!(
        socket.state(),
        PgWireConnectionState::AwaitingSslRequest | PgWireConnectionState::AwaitingStartup
    );
    futures::future::poll_fn(|cx| match socket.poll_next_unpin(cx) {
        Poll::Ready(Some(Ok(m))) => Poll::Ready(Some(Ok(m))),
        Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(match e {
            PgWireError::MessageTooLarge(_, len) => ReadError::TooLong(len),
            other => ReadError::Malformed(other.to_string()),
        }))),
        Poll::Ready(None) => Poll::Ready(None),
        Poll::Pending => {
            // An incomplete message waits in the buffer: its header tells how long it will be.
            let buffered = socket.read_buffer();
            let declared = if typed && buffered.len() >= 5 {
                i32::from_be_bytes([buffered[1], buffered[2], buffered[3], buffered[4]]) as i64
            } else if !typed && buffered.len() >= 4 {
                i32::from_be_bytes([buffered[0], buffered[1], buffered[2], buffered[3]]) as i64
            } else {
                0
            };
            if declared < 0 || declared as usize > max || buffered.len() > max {
                if typed && declared as usize > max {
                    return Poll::Ready(Some(Err(ReadError::Oversized {
                        kind: buffered[0],
                        total: declared as usize + 1,
                    })));
                }
                let len = (declared.max(0) as usize).max(buffered.len());
                return Poll::Ready(Some(Err(ReadError::TooLong(len))));
            }
            Poll::Pending
        }
    })
    .await
}

/// Runs the startup and authentication exchange; `true` once the client is authenticated and
/// ready for queries, `false` when the connection was ended (with a FATAL error, or silently
/// when the client went away or ran out of time).
async fn authenticate(
    front: &Arc<PgFront>,
    socket: &mut Socket,
    peer: SocketAddr,
    deadline: Instant,
) -> bool {
    let startup = front.startup(peer);
    loop {
        let state = socket.state();
        if matches!(state, PgWireConnectionState::ReadyForQuery) {
            front.auth_delays.succeeded(peer.ip());
            return true;
        }
        let message =
            match tokio::time::timeout_at(deadline, next_message(socket, MAX_AUTH_MESSAGE_BYTES))
                .await
            {
                Err(_) => {
                    fatal(
                        socket,
                        ErrorInfo::new(
                            "FATAL".into(),
                            "08006".into(),
                            format!(
                                "authentication did not finish within {} s",
                                AUTH_TIMEOUT.as_secs()
                            ),
                        ),
                    )
                    .await;
                    return false;
                }
                Ok(None) => return false,
                Ok(Some(Err(
                    ReadError::TooLong(len) | ReadError::Oversized { total: len, .. },
                ))) => {
                    fatal(
                        socket,
                        protocol_violation(format!(
                            "a {len}-byte message during authentication (at most \
                             {MAX_AUTH_MESSAGE_BYTES})"
                        )),
                    )
                    .await;
                    return false;
                }
                Ok(Some(Err(ReadError::Malformed(why)))) => {
                    fatal(
                        socket,
                        protocol_violation(format!("invalid message: {why}")),
                    )
                    .await;
                    return false;
                }
                Ok(Some(Ok(m))) => m,
            };
        let expected = match (&message, state) {
            (PgWireFrontendMessage::CancelRequest(_), _) => {
                if let PgWireFrontendMessage::CancelRequest(c) = message {
                    use pgwire::api::cancel::CancelHandler;
                    front.cancel.on_cancel_request(c).await;
                }
                let _ = socket.close().await;
                return false;
            }
            (PgWireFrontendMessage::Terminate(_), _) => return false,
            (PgWireFrontendMessage::Startup(_), PgWireConnectionState::AwaitingStartup) => true,
            (
                PgWireFrontendMessage::PasswordMessageFamily(_),
                PgWireConnectionState::AuthenticationInProgress,
            ) => true,
            _ => false,
        };
        if !expected {
            fatal(
                socket,
                protocol_violation(format!(
                    "unexpected message during authentication ({})",
                    message_name(&message)
                )),
            )
            .await;
            return false;
        }
        use pgwire::api::auth::StartupHandler;
        if let Err(mut e) = startup.on_startup(socket, message).await {
            if matches!(e, PgWireError::InvalidPassword(_)) {
                // Answered only after a delay that grows with this address's recent failures.
                tokio::time::sleep(front.auth_delays.failed(peer.ip())).await;
            }
            front.errors.on_error(socket, &mut e);
            fatal(socket, e.into()).await;
            return false;
        }
    }
}

/// A message's name for an error (the protocol's names).
fn message_name(m: &PgWireFrontendMessage) -> &'static str {
    match m {
        PgWireFrontendMessage::Startup(_) => "StartupMessage",
        PgWireFrontendMessage::PasswordMessageFamily(_) => "PasswordMessage",
        PgWireFrontendMessage::Query(_) => "Query",
        PgWireFrontendMessage::Parse(_) => "Parse",
        PgWireFrontendMessage::Bind(_) => "Bind",
        PgWireFrontendMessage::Execute(_) => "Execute",
        PgWireFrontendMessage::Describe(_) => "Describe",
        PgWireFrontendMessage::Close(_) => "Close",
        PgWireFrontendMessage::Sync(_) => "Sync",
        PgWireFrontendMessage::Flush(_) => "Flush",
        _ => "another message",
    }
}

/// The query loop of an authenticated connection; its session is built when its first message
/// arrives.
async fn serve(
    front: &Arc<PgFront>,
    socket: &mut Socket,
    interrupt: Arc<Interrupt>,
) -> std::io::Result<()> {
    let max = front
        .limits
        .max_statement_bytes
        .saturating_add(MESSAGE_MARGIN_BYTES);
    let mut handlers = None;
    let mut interrupt = Some(interrupt);
    loop {
        let message = match next_message(socket, max).await {
            None => return Ok(()),
            Some(Err(ReadError::TooLong(len))) => {
                fatal(
                    socket,
                    ErrorInfo::new(
                        "FATAL".into(),
                        "54000".into(),
                        format!(
                            "a {len}-byte message: this server accepts statements of at most {} \
                             bytes (--max-statement-bytes)",
                            front.limits.max_statement_bytes
                        ),
                    ),
                )
                .await;
                return Ok(());
            }
            Some(Err(ReadError::Oversized { kind, total })) => {
                // Read past it without keeping it, then refuse the statement alone: the
                // connection goes on, as after any other error.
                skip(socket, total).await?;
                let extended = matches!(kind, b'P' | b'B' | b'E' | b'D' | b'C' | b'H' | b'S');
                let error = super::user_error(
                    "54000",
                    format!(
                        "the statement is too long: a {total}-byte message, and this server \
                         accepts statements of at most {} bytes (--max-statement-bytes)",
                        front.limits.max_statement_bytes
                    ),
                );
                process_error(socket, error, extended).await?;
                continue;
            }
            Some(Err(ReadError::Malformed(why))) => {
                fatal(
                    socket,
                    protocol_violation(format!("invalid message: {why}")),
                )
                .await;
                return Ok(());
            }
            Some(Ok(m)) => m,
        };
        if matches!(message, PgWireFrontendMessage::Terminate(_)) {
            return Ok(());
        }
        let h = match &handlers {
            Some(h) => h,
            None => {
                let i = interrupt.take().expect("taken once, with the session");
                match front.connection(i) {
                    Ok(h) => handlers.insert(h),
                    Err(e) => {
                        eprintln!("postgres connection: {}", error_line(&e));
                        fatal(
                            socket,
                            ErrorInfo::new("FATAL".into(), "XX000".into(), error_line(&e)),
                        )
                        .await;
                        return Ok(());
                    }
                }
            }
        };
        let extended = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => message.is_extended_query(),
        };
        // (After an error the extended protocol discards messages up to Sync: nothing to check.)
        if !matches!(socket.state(), PgWireConnectionState::AwaitingSync)
            && let Err(e) = within_keeping_limits(socket, &message)
        {
            process_error(socket, e, extended).await?;
            continue;
        }
        if let Err(mut e) = process_message(
            message,
            socket,
            h.startup.clone(),
            h.queries.clone(),
            h.queries.clone(),
            h.copy_handler(),
            h.cancel.clone(),
        )
        .await
        {
            h.errors.on_error(socket, &mut e);
            let info: ErrorInfo = e.into();
            if info.is_fatal() {
                fatal(socket, info).await;
                return Ok(());
            }
            process_error(socket, PgWireError::UserError(Box::new(info)), extended).await?;
        }
        shrink_buffers(socket);
    }
}

/// Whether the client has closed its side of the connection (or it broke). On Linux the
/// socket is polled for POLLRDHUP, which reports the client's close even when bytes it sent
/// before closing are still unread (a pipelined message, a TLS close_notify); elsewhere a
/// peek sees the end only once everything before it has been read.
fn hung_up(socket: &std::net::TcpStream) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let mut fd = libc::pollfd {
            fd: socket.as_raw_fd(),
            events: libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: poll(2) on one pollfd of a descriptor this process owns, without waiting.
        let ready = unsafe { libc::poll(&mut fd, 1, 0) };
        if ready > 0 {
            return fd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0;
        }
        false
    }
    #[cfg(not(target_os = "linux"))]
    {
        let mut byte = [0u8; 1];
        match socket.peek(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
            ),
        }
    }
}

/// Prepared statements a connection may keep, and the bytes of their text together.
const MAX_STATEMENTS: usize = 256;
const MAX_STATEMENT_TEXT_BYTES: usize = 8 << 20;

/// The bytes of bound parameters a connection's portals may keep together.
const MAX_PORTAL_PARAMETER_BYTES: usize = 8 << 20;

/// Refuses a Parse or Bind that would make the connection keep more prepared statements or
/// portals than it may (pgwire keeps them until they are closed or the connection ends): an
/// error for that message alone (54000), and the connection goes on.
fn within_keeping_limits(
    socket: &Socket,
    message: &PgWireFrontendMessage,
) -> Result<(), PgWireError> {
    use pgwire::api::ClientPortalStore;
    let too_many = |what: String| {
        Err(super::user_error(
            "54000",
            format!("{what}: close (DEALLOCATE, CLOSE) some before making more"),
        ))
    };
    match message {
        PgWireFrontendMessage::Parse(parse) => {
            let (count, bytes) = socket
                .portal_store()
                .statements_weight(|s| s.statement.0.len());
            let named = parse.name.as_deref().is_some_and(|n| !n.is_empty());
            if named && count >= MAX_STATEMENTS {
                return too_many(format!(
                    "this connection keeps {count} prepared statements, the most it may"
                ));
            }
            if bytes + parse.query.len() > MAX_STATEMENT_TEXT_BYTES {
                return too_many(format!(
                    "this connection's prepared statements hold {bytes} bytes of text, and it \
                     may keep {MAX_STATEMENT_TEXT_BYTES}"
                ));
            }
        }
        PgWireFrontendMessage::Bind(bind) => {
            let (count, bytes) = socket.portal_store().portals_weight();
            let named = bind.portal_name.as_deref().is_some_and(|n| !n.is_empty());
            if named && count >= super::hooks::queries::MAX_PORTALS {
                return too_many(format!(
                    "this connection keeps {count} portals and cursors, the most it may"
                ));
            }
            let new: usize = bind.parameters.iter().flatten().map(|b| b.len()).sum();
            if bytes + new > MAX_PORTAL_PARAMETER_BYTES {
                return too_many(format!(
                    "this connection's portals hold {bytes} bytes of parameters, and it may keep \
                     {MAX_PORTAL_PARAMETER_BYTES}"
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

/// Buffers kept between messages, at most (they grow to the largest message read or written).
const KEPT_BUFFER_BYTES: usize = 64 << 10;

/// Gives back what a large message grew the connection's buffers to, so that an idle connection
/// costs little whatever it sent or received before.
fn shrink_buffers(socket: &mut Socket) {
    let read = socket.read_buffer_mut();
    if read.capacity() > KEPT_BUFFER_BYTES && read.len() <= KEPT_BUFFER_BYTES {
        let rest = bytes::BytesMut::from(&read[..]);
        *read = rest;
    }
    let write = socket.write_buffer_mut();
    if write.capacity() > KEPT_BUFFER_BYTES && write.is_empty() {
        *write = bytes::BytesMut::new();
    }
}

/// Reads and drops the `total` bytes of the message that starts the read buffer, without
/// keeping more than one chunk of it.
async fn skip(socket: &mut Socket, total: usize) -> std::io::Result<()> {
    use tokio::io::AsyncReadExt;
    let buffered = socket.read_buffer().len().min(total);
    let _ = socket.read_buffer_mut().split_to(buffered);
    let mut left = total - buffered;
    let mut chunk = vec![0u8; 64 << 10];
    while left > 0 {
        let want = left.min(chunk.len());
        let n = socket.get_mut().read(&mut chunk[..want]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        left -= n;
    }
    Ok(())
}

/// Answers a client over the connection limit as PostgreSQL does, then closes.
async fn refuse(front: Arc<PgFront>, socket: TcpStream, _refuser: OwnedSemaphorePermit) {
    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, async {
        let Ok(Some(mut socket)) = negotiate_tls::<PgStatement>(socket, front.tls.clone()).await
        else {
            return;
        };
        match next_message(&mut socket, MAX_AUTH_MESSAGE_BYTES).await {
            // A cancel request is served whatever the number of connections.
            Some(Ok(PgWireFrontendMessage::CancelRequest(c))) => {
                use pgwire::api::cancel::CancelHandler;
                front.cancel.on_cancel_request(c).await;
                let _ = socket.close().await;
            }
            Some(Ok(PgWireFrontendMessage::Startup(_))) => {
                fatal(
                    &mut socket,
                    ErrorInfo::new(
                        "FATAL".into(),
                        "53300".into(),
                        "sorry, too many clients already".into(),
                    ),
                )
                .await;
            }
            _ => {
                let _ = socket.close().await;
            }
        }
    })
    .await;
}

/// The socket for the connection, and a task that fires `interrupt` when the client hangs up.
/// pgwire reads the socket only between queries, so a client that disconnects while its query
/// runs would otherwise leave the query running (and holding its slot) to the end; the task
/// peeks at a second handle of the same socket: end of stream or a reset means the client is
/// gone. (Over TLS a client's close_notify is unread data, so only a hang-up without it, such
/// as a killed client, is noticed before the query's next rows are written.)
fn watch_for_hangup(
    socket: TcpStream,
    interrupt: Arc<Interrupt>,
) -> std::io::Result<(
    TcpStream,
    impl std::future::Future<Output = ()> + Send + 'static,
)> {
    let std_socket = socket.into_std()?;
    let peeker = std_socket.try_clone()?;
    let socket = TcpStream::from_std(std_socket)?;
    let watcher = async move {
        loop {
            tokio::time::sleep(HANGUP_CHECK).await;
            if hung_up(&peeker) {
                break;
            }
        }
        interrupt.fire(Stop::Gone);
    };
    Ok((socket, watcher))
}
