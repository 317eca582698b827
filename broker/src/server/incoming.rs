//! Accepted connections, for both listeners.
//!
//! - **A ceiling.** Past `max` open connections a new one is closed at once (as Kafka's
//!   `max.connections` does), so the broker's memory and file descriptors stay bounded;
//!   clients see the connection closed and may retry.
//! - **TLS.** With `[tls]` on, each connection's handshake runs in its own task, bounded by
//!   [`HANDSHAKE_TIMEOUT`], so a slow or silent client holds up nobody else. A failed
//!   handshake (plain text on a TLS port, an unknown CA, an expired certificate) closes the
//!   connection and counts in `brook_tls_handshake_failures_total`. The client certificate's
//!   principal travels with the connection in [`PeerInfo`].

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::either::Either;
use tonic::transport::server::Connected;

use crate::security::tls::{Listener, Tls, certificate_principal};

/// Longest a TLS handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepted connections not yet picked up by the server.
const BACKLOG: usize = 64;

/// Who is on the other end of a connection; in every request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The client's address.
    pub remote_addr: SocketAddr,
    /// `User:<CN>` of the certificate the client presented over TLS, if any.
    pub certificate_principal: Option<String>,
}

/// An accepted connection holding one of the permits.
#[derive(Debug)]
pub struct Conn {
    io: Either<TcpStream, Box<TlsStream<TcpStream>>>,
    peer: PeerInfo,
    _slot: Slot,
}

/// One of the `max` connections: the permit and the gauge go back when it drops.
#[derive(Debug)]
struct Slot {
    _permit: OwnedSemaphorePermit,
    gauge: &'static str,
}

impl Drop for Slot {
    fn drop(&mut self) {
        metrics::gauge!(self.gauge).decrement(1.0);
    }
}

impl Connected for Conn {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.peer.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Accepts connections on `listener` in a task of its own until the returned receiver is
/// dropped; at most `max` are open at once. With `tls`, each is handed over once its
/// handshake succeeded.
pub fn accept(
    listener: TcpListener,
    which: Listener,
    max: usize,
    tls: Option<Arc<Tls>>,
) -> mpsc::Receiver<Conn> {
    let (tx, rx) = mpsc::channel(BACKLOG);
    let (name, gauge, rejected) = match which {
        Listener::Grpc => (
            "grpc",
            "brook_connections",
            "brook_connections_rejected_total",
        ),
        Listener::Http => (
            "http",
            "brook_http_connections",
            "brook_http_connections_rejected_total",
        ),
    };
    tokio::spawn(async move {
        let permits = Arc::new(Semaphore::new(max));
        loop {
            let (stream, remote_addr) = tokio::select! {
                _ = tx.closed() => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of descriptors and the like: wait a little rather than spin.
                        tracing::warn!(cause = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                metrics::counter!(rejected).increment(1);
                tracing::warn!(peer = %remote_addr, max, listener = name, "connection refused: max_connections reached");
                continue;
            };
            let _ = stream.set_nodelay(true);
            metrics::gauge!(gauge).increment(1.0);
            let slot = Slot {
                _permit: permit,
                gauge,
            };
            let Some(tls) = &tls else {
                let peer = PeerInfo {
                    remote_addr,
                    certificate_principal: None,
                };
                let conn = Conn {
                    io: Either::Left(stream),
                    peer,
                    _slot: slot,
                };
                if tx.send(conn).await.is_err() {
                    return;
                }
                continue;
            };
            let acceptor = TlsAcceptor::from(tls.server_config(which));
            let tx = tx.clone();
            tokio::spawn(async move {
                let stream =
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => return handshake_failed(name, remote_addr, &e.to_string()),
                        Err(_) => return handshake_failed(name, remote_addr, "timed out"),
                    };
                let certificate_principal = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(|cert| certificate_principal(cert));
                let peer = PeerInfo {
                    remote_addr,
                    certificate_principal,
                };
                let conn = Conn {
                    io: Either::Right(Box::new(stream)),
                    peer,
                    _slot: slot,
                };
                let _ = tx.send(conn).await;
            });
        }
    });
    rx
}

fn handshake_failed(listener: &'static str, peer: SocketAddr, cause: &str) {
    metrics::counter!("brook_tls_handshake_failures_total", "listener" => listener).increment(1);
    tracing::info!(%peer, listener, cause, "TLS handshake failed");
}

/// The accepted connections as the stream tonic serves.
pub fn stream(rx: mpsc::Receiver<Conn>) -> impl futures::Stream<Item = io::Result<Conn>> {
    futures::StreamExt::map(ReceiverStream::new(rx), Ok)
}

/// The accepted connections as axum's listener.
pub struct HttpListener {
    rx: mpsc::Receiver<Conn>,
    local_addr: SocketAddr,
}

impl HttpListener {
    /// Serves what `rx` hands over; `local_addr` is the bound address.
    pub fn new(rx: mpsc::Receiver<Conn>, local_addr: SocketAddr) -> HttpListener {
        HttpListener { rx, local_addr }
    }
}

impl axum::serve::Listener for HttpListener {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        match self.rx.recv().await {
            Some(conn) => {
                let addr = conn.peer.remote_addr;
                (conn, addr)
            }
            // The accept task only ends when this receiver is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local_addr)
    }
}
