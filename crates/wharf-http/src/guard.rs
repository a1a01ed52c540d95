//! What the accept loop ([`crate::serve`]) keeps per connection to enforce its limits: the
//! count of open connections in all and per source address, a connection's activity (requests
//! in progress, counted from a request's head to the end of its response body, and when that
//! count last changed), and request bodies that fail when the peer stops sending.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use hyper::body::{Frame, Incoming, SizeHint};
use tokio::time::{Instant, Sleep};

/// Open connections, in all and per source address.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionCounter {
    max_total: usize,
    max_per_source: usize,
    open: Arc<Mutex<(usize, HashMap<IpAddr, usize>)>>,
}

/// A connection's place under the caps; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct Slot {
    source: IpAddr,
    open: Arc<Mutex<(usize, HashMap<IpAddr, usize>)>>,
}

impl ConnectionCounter {
    pub(crate) fn new(max_total: usize, max_per_source: usize) -> ConnectionCounter {
        ConnectionCounter { max_total, max_per_source, open: Arc::default() }
    }

    /// A place for a new connection from `source`, or `None` over either cap.
    pub(crate) fn admit(&self, source: IpAddr) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (total, per_source) = &mut *open;
        let from_source = per_source.get(&source).copied().unwrap_or(0);
        if *total >= self.max_total || from_source >= self.max_per_source {
            return None;
        }
        *total += 1;
        per_source.insert(source, from_source + 1);
        Some(Slot { source, open: Arc::clone(&self.open) })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (total, per_source) = &mut *open;
        *total = total.saturating_sub(1);
        if let Some(n) = per_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                per_source.remove(&self.source);
            }
        }
    }
}

/// The requests in progress on one connection, and when that last changed.
#[derive(Debug)]
pub(crate) struct Activity {
    in_flight: AtomicUsize,
    start: Instant,
    /// Milliseconds from `start` to the last change.
    last_ms: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Arc<Activity> {
        Arc::new(Activity { in_flight: AtomicUsize::new(0), start: Instant::now(), last_ms: AtomicU64::new(0) })
    }

    /// Counts now as the last change.
    pub(crate) fn touch(&self) {
        self.last_ms.store(self.start.elapsed().as_millis() as u64, Ordering::Release);
    }

    /// Completes once no request has been in progress for `idle`.
    pub(crate) async fn idle_for(&self, idle: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Acquire));
            let busy = self.in_flight.load(Ordering::Acquire) > 0;
            if !busy && last.elapsed() >= idle {
                return;
            }
            // A busy connection is looked at again after a whole period.
            let until = if busy { Instant::now() + idle } else { last + idle };
            tokio::time::sleep_until(until).await;
        }
    }
}

/// One request in progress: counted from its head until its response body is done or dropped.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity.touch();
        InFlight(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The response body, holding its request's place in the connection's activity.
pub(crate) struct TrackedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl HttpBody for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body stopped arriving.
#[derive(Debug, thiserror::Error)]
#[error("the request body sent nothing for {0:?}")]
pub(crate) struct BodyStalled(Duration);

/// A request body that fails with [`BodyStalled`] when no data arrives for `timeout` while
/// it is being read.
pub(crate) struct IdleBody {
    inner: Incoming,
    timeout: Duration,
    last: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl HttpBody for IdleBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.last = Instant::now();
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        // The timer is armed once and moved only when it fires early (data arrived since it
        // was set): resetting it on every wait would cost a timer operation per frame.
        loop {
            let deadline = this.last + this.timeout;
            let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            match sleep.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) if Instant::now() >= deadline => {
                    return Poll::Ready(Some(Err(Box::new(BodyStalled(this.timeout)))));
                }
                Poll::Ready(()) => sleep.as_mut().reset(deadline),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The router as one connection's service: each request carries the peer's address and
/// certificate, its body fails when it stalls, and it counts as activity until its response
/// body is done.
#[derive(Clone)]
pub(crate) struct ConnectionService {
    router: Router,
    peer: SocketAddr,
    leaf: Option<(crate::PeerCertificate, Option<crate::PeerUser>)>,
    activity: Arc<Activity>,
    body_idle: Duration,
}

pub(crate) fn service(
    router: Router,
    peer: SocketAddr,
    leaf: Option<(crate::PeerCertificate, Option<crate::PeerUser>)>,
    activity: Arc<Activity>,
    body_idle: Duration,
) -> ConnectionService {
    ConnectionService { router, peer, leaf, activity, body_idle }
}

type ServiceFuture = Pin<Box<dyn Future<Output = Result<hyper::Response<TrackedBody>, Infallible>> + Send>>;

impl tower::Service<hyper::Request<Incoming>> for ConnectionService {
    type Response = hyper::Response<TrackedBody>;
    type Error = Infallible;
    type Future = ServiceFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: hyper::Request<Incoming>) -> ServiceFuture {
        let in_flight = InFlight::start(Arc::clone(&self.activity));
        let timeout = self.body_idle;
        let mut req = req.map(|inner| IdleBody { inner, timeout, last: Instant::now(), sleep: None });
        req.extensions_mut().insert(crate::PeerAddr(self.peer));
        if let Some((node, user)) = &self.leaf {
            req.extensions_mut().insert(node.clone());
            if let Some(user) = user {
                req.extensions_mut().insert(user.clone());
            }
        }
        let response = tower::ServiceExt::oneshot(self.router.clone(), req);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|inner| TrackedBody { inner, _in_flight: in_flight }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_capped_in_all_and_per_source() {
        let counter = ConnectionCounter::new(3, 2);
        let (a, b, c): (IpAddr, IpAddr, IpAddr) =
            ("10.0.0.1".parse().expect("ip"), "10.0.0.2".parse().expect("ip"), "10.0.0.3".parse().expect("ip"));
        let a1 = counter.admit(a).expect("first from a");
        let _a2 = counter.admit(a).expect("second from a");
        assert!(counter.admit(a).is_none(), "a third from one source");
        let _b1 = counter.admit(b).expect("first from b");
        assert!(counter.admit(c).is_none(), "over the total");
        drop(a1);
        let _c1 = counter.admit(c).expect("a place came free");
        assert!(counter.admit(a).is_none());
    }

    #[tokio::test]
    async fn a_connection_is_idle_only_with_no_request_in_progress() {
        let activity = Activity::new();
        let idle = Duration::from_millis(100);
        let request = InFlight::start(Arc::clone(&activity));
        let waited = tokio::time::timeout(Duration::from_millis(500), activity.idle_for(idle)).await;
        assert!(waited.is_err(), "a request in progress keeps the connection busy");
        drop(request);
        let started = Instant::now();
        activity.idle_for(idle).await;
        assert!(started.elapsed() >= idle, "idle counts from the end of the last request");
    }
}
