//! The accept loop: TCP, optional TLS, HTTP/1.1 and HTTP/2 on one port, graceful shutdown,
//! and the limits that keep anyone from holding connections open: caps on connections in
//! total and per source address (a connection over a cap is closed at once, never queued), a
//! TLS handshake deadline, a request-head deadline (HTTP/1.1; hyper's header read timeout,
//! which also covers a kept-alive connection waiting for its next request), a deadline for a
//! request body that stops arriving, and an idle deadline for a connection with no request
//! in progress (both protocols; HTTP/2 also pings its peer). Deadlines and caps are
//! [`Limits`]; see [`crate::guard`] for how activity is tracked.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::guard::{Activity, ConnectionCounter};

/// HTTP/2 flow-control windows for one stream and for a whole connection.
const H2_STREAM_WINDOW: u32 = 8 << 20;
const H2_CONNECTION_WINDOW: u32 = 16 << 20;

/// How long open connections get to finish after shutdown is signalled.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection with no request in progress gets to go after shutdown is signalled.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// How many connections a node serves, and how long a peer may keep one without progress.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections open at once, in all; more are closed as they arrive.
    pub max_connections: usize,
    /// Connections open at once from one source address.
    pub max_connections_per_source: usize,
    /// From accepting a TLS connection to the end of its handshake.
    pub handshake_timeout: Duration,
    /// For an HTTP/1.1 request head, counted from when the connection is ready for it.
    pub header_timeout: Duration,
    /// A request body that sends nothing for this long fails (and its connection closes).
    pub body_idle_timeout: Duration,
    /// A connection with no request in progress for this long is closed (after a graceful
    /// close: HTTP/2 `GOAWAY`, and the same time again for the peer to go).
    pub idle_timeout: Duration,
    /// How often HTTP/2 pings an idle peer, and how long it waits for the answer.
    pub h2_ping_interval: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 4096,
            max_connections_per_source: 256,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(30),
            body_idle_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(90),
            h2_ping_interval: Duration::from_secs(30),
        }
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` completes, then drains open
/// connections.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    let builder = http_builder(&limits);
    let counter = ConnectionCounter::new(limits.max_connections, limits.max_connections_per_source);
    let limits = Arc::new(limits);
    // Every connection task holds a sender: the drain ends when the last one is dropped.
    let (open_tx, mut open_rx) = mpsc::channel::<()>(1);
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = counter.admit(peer.ip()) else {
            tracing::debug!(%peer, "connection refused: over the connection cap");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            router: router.clone(),
            builder: builder.clone(),
            limits: Arc::clone(&limits),
            peer,
            stop: stop_rx.clone(),
        };
        let (acceptor, open) = (acceptor.clone(), open_tx.clone());
        tokio::spawn(async move {
            connection.run(stream, acceptor).await;
            drop((slot, open));
        });
    }
    let _ = stop_tx.send(true);
    drop(open_tx);
    if tokio::time::timeout(DRAIN_TIMEOUT, open_rx.recv()).await.is_err() {
        tracing::warn!("connections still open after the drain timeout were closed");
    }
}

fn http_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    // Large fixed windows: blob uploads are long streams, and small or adaptive windows make
    // HTTP/2 pushes stall on flow control.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.h2_ping_interval)
        .keep_alive_timeout(limits.h2_ping_interval)
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .max_frame_size(1 << 20)
        .max_concurrent_streams(512);
    builder
}

/// One accepted connection and what serving it needs.
struct Connection {
    router: Router,
    builder: auto::Builder<TokioExecutor>,
    limits: Arc<Limits>,
    peer: std::net::SocketAddr,
    stop: watch::Receiver<bool>,
}

impl Connection {
    async fn run(self, stream: TcpStream, acceptor: Option<TlsAcceptor>) {
        let peer = self.peer;
        match acceptor {
            Some(acceptor) => {
                let tls = match tokio::time::timeout(self.limits.handshake_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "tls handshake failed"),
                    Err(_) => return tracing::debug!(%peer, "tls handshake timed out"),
                };
                // Each request carries the certificate the peer presented (verified against
                // the cluster CA by rustls), read once per connection.
                let leaf = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| {
                    let node = wharf_pki::node_identity(c.as_ref()).map(std::sync::Arc::new);
                    let user = wharf_pki::user_certificate(c.as_ref()).map(|u| crate::PeerUser(std::sync::Arc::new(u)));
                    (crate::PeerCertificate(node), user)
                });
                self.serve(TokioIo::new(tls), leaf).await;
            }
            None => self.serve(TokioIo::new(stream), None).await,
        }
    }

    /// Serves HTTP on `io` until the peer goes, the connection idles past its deadline, or the
    /// server stops.
    async fn serve<I>(mut self, io: I, leaf: Option<(crate::PeerCertificate, Option<crate::PeerUser>)>)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let activity = Activity::new();
        let service = crate::guard::service(
            self.router.clone(),
            self.peer,
            leaf,
            Arc::clone(&activity),
            self.limits.body_idle_timeout,
        );
        let conn = self.builder.serve_connection_with_upgrades(io, TowerToHyperService::new(service));
        tokio::pin!(conn);
        let mut idle = self.limits.idle_timeout;
        let mut closing = false;
        let result = loop {
            tokio::select! {
                result = conn.as_mut() => break result,
                () = activity.idle_for(idle) => {
                    if closing {
                        // The peer kept an idle connection open after the graceful close
                        // (an HTTP/2 peer that does not answer the GOAWAY's ping).
                        break Ok(());
                    }
                    tracing::debug!(peer = %self.peer, "closing an idle connection");
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                    activity.touch();
                }
                changed = self.stop.changed(), if !closing => {
                    if changed.is_err() || *self.stop.borrow() {
                        // Requests in progress may finish (within the drain time); an idle
                        // connection gets a short grace to go.
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                        idle = idle.min(STOP_GRACE);
                        activity.touch();
                    }
                }
            }
        };
        if let Err(e) = result {
            tracing::debug!(peer = %self.peer, error = %e, "connection ended with an error");
        }
    }
}
