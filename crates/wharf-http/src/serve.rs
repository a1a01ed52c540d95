//! The accept loop: TCP, optional TLS, HTTP/1.1 and HTTP/2 on one port, graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// HTTP/2 flow-control windows for one stream and for a whole connection.
const H2_STREAM_WINDOW: u32 = 8 << 20;
const H2_CONNECTION_WINDOW: u32 = 16 << 20;

/// How long open connections get to finish after shutdown is signalled.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown` completes, then drains open connections.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(Duration::from_secs(60));
    // Large fixed windows: blob uploads are long streams, and small or adaptive windows make
    // HTTP/2 pushes stall on flow control.
    builder
        .http2()
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .max_frame_size(1 << 20)
        .max_concurrent_streams(512);
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
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            // Each request carries the peer's address and, after a mutual-TLS handshake, the
            // certificate the peer presented (verified against the cluster CA by rustls).
            let service = |leaf: Option<crate::PeerCertificate>| {
                TowerToHyperService::new(tower::ServiceExt::map_request(
                    router,
                    move |mut req: hyper::Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(crate::PeerAddr(peer));
                        if let Some(leaf) = &leaf {
                            req.extensions_mut().insert(leaf.clone());
                        }
                        req
                    },
                ))
            };
            let result = match acceptor {
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(tls) => {
                        let leaf = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| {
                            crate::PeerCertificate(wharf_pki::node_identity(c.as_ref()).map(std::sync::Arc::new))
                        });
                        watcher.watch(builder.serve_connection_with_upgrades(TokioIo::new(tls), service(leaf))).await
                    }
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "tls handshake failed");
                        return;
                    }
                },
                None => {
                    watcher.watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), service(None))).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        tracing::warn!("connections still open after the drain timeout were closed");
    }
}
