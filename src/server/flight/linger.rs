//! Lingering close for the server's connections.
//!
//! When a server closes a TCP connection while the client is still sending (HTTP/2 window updates
//! for the data it is reading), the kernel answers the client's next segment with a reset, and a
//! reset makes the client's kernel drop whatever it had received but the client had not read yet:
//! the last batches of a result, delivered by the server, vanish, and the client reads "broken
//! pipe" instead of the end of its stream. This happened at graceful shutdown (the server ends
//! the connection right after the last stream). So a connection, once the HTTP/2 layer is done
//! with it, is not closed at once: its write side is shut down (the client reads everything, then
//! end-of-stream), and its read side is drained until the client closes too, or a time limit.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tonic::transport::server::{Connected, TcpConnectInfo};

use super::admission::{Admission, Admitted};

/// How long a closed connection waits for its client to close.
const LINGER: Duration = Duration::from_secs(10);

/// The connections still lingering.
#[derive(Clone, Default)]
pub struct Lingering {
    count: Arc<(AtomicUsize, Notify)>,
}

impl Lingering {
    /// Accepted connections of `listener` that `admission` admits, each closed lingeringly when
    /// dropped.
    pub fn incoming(
        &self,
        listener: TcpListener,
        admission: Admission,
    ) -> impl Stream<Item = io::Result<LingeringStream>> + Send + 'static {
        let count = self.count.clone();
        futures::stream::unfold(listener, move |listener| {
            let count = count.clone();
            let admission = admission.clone();
            async move {
                loop {
                    let (stream, peer) = match listener.accept().await {
                        Ok(a) => a,
                        Err(e) => return Some((Err(e), listener)),
                    };
                    let _ = stream.set_nodelay(true);
                    let Some(admitted) = admission.admit(&stream, peer) else {
                        continue;
                    };
                    let stream = LingeringStream {
                        inner: Some(stream),
                        count,
                        _admitted: Some(admitted),
                    };
                    return Some((Ok(stream), listener));
                }
            }
        })
    }

    /// Waits until no connection lingers, for at most `max`.
    pub async fn wait(&self, max: Duration) {
        let _ = tokio::time::timeout(max, async {
            loop {
                let notified = self.count.1.notified();
                if self.count.0.load(Ordering::Acquire) == 0 {
                    return;
                }
                notified.await;
            }
        })
        .await;
    }
}

/// A server connection that closes lingeringly (see the module docs).
pub struct LingeringStream {
    inner: Option<TcpStream>,
    count: Arc<(AtomicUsize, Notify)>,
    /// The connection's place among the listener's connections, given back when it closes.
    _admitted: Option<Admitted>,
}

impl LingeringStream {
    fn stream(&mut self) -> Pin<&mut TcpStream> {
        Pin::new(self.inner.as_mut().expect("open until dropped"))
    }
}

impl AsyncRead for LingeringStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.stream().poll_read(cx, buf)
    }
}

impl AsyncWrite for LingeringStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.stream().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.stream().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_shutdown(cx)
    }
}

impl Connected for LingeringStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.inner
            .as_ref()
            .expect("open until dropped")
            .connect_info()
    }
}

impl Drop for LingeringStream {
    fn drop(&mut self) {
        let Some(mut stream) = self.inner.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let count = self.count.clone();
        // The connection keeps its place among the listener's connections while it lingers, so
        // connecting and closing fast cannot hold more sockets than --max-connections.
        let admitted = self._admitted.take();
        count.0.fetch_add(1, Ordering::AcqRel);
        runtime.spawn(async move {
            let _admitted = admitted;
            let _ = tokio::time::timeout(LINGER, async {
                // End of stream for the client once it has read everything sent before.
                let _ = stream.shutdown().await;
                let mut sink = [0u8; 4096];
                while let Ok(n) = stream.read(&mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
            })
            .await;
            drop(stream);
            count.0.fetch_sub(1, Ordering::AcqRel);
            count.1.notify_waiters();
        });
    }
}
