//! Plain HTTP/1.1 serving of an [`Origin`] (local mode, tests): the same `handle` the
//! Lambda main calls, behind hyper, within the [`Limits`] of every local listener.

use crate::body::OriginBody;
use crate::handler::Origin;
pub use crate::listener::{Limits, MAX_REQUEST_BODY};
use crate::listener::{Refusal, Slots};
use http::{header, HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch, OwnedSemaphorePermit};
use tokio::task::JoinSet;
use tokio_util::task::TaskTracker;

/// In-flight requests get this long to finish after shutdown is asked for.
const DRAIN: Duration = Duration::from_secs(10);

/// The answer to a body that was not read; the connection closes after it, since the
/// rest of the body may still be on its way.
fn refused(r: Refusal) -> Response<OriginBody> {
    let mut resp = Response::new(OriginBody::from(format!("{r}\n")));
    *resp.status_mut() = r.status();
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Answers one connection until it closes, or until `stop` turns true; then it finishes
/// the request in flight and closes.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    origin: Arc<Origin>,
    limits: Arc<Limits>,
    mut stop: watch::Receiver<bool>,
) {
    // Responses are written whole; nothing is gained by holding a segment back.
    let _ = stream.set_nodelay(true);
    // Requests borrow the connection's handle on the origin: a clone per request would be
    // a write to a counter every serving thread shares.
    let origin: &Origin = &origin;
    let limits: &Limits = &limits;
    let svc = service_fn(move |req: Request<Incoming>| async move {
        let (parts, body) = req.into_parts();
        // The counters are for the operator of local mode: only this listener answers
        // them, never the Lambda adapter.
        if parts.uri.path() == crate::counters::METRICS_PATH && parts.method == http::Method::GET {
            return Ok(crate::counters::exposition(origin.observer()));
        }
        let body = match limits.read_body(body, parts.uri.path()).await {
            Ok(b) => b,
            Err(r) => return Ok::<_, Infallible>(refused(r)),
        };
        Ok(origin
            .handle(Request::from_parts(parts, body), Some(peer.ip()))
            .await)
    });
    let conn = limits.http1().serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        _ = async { let _ = stop.wait_for(|s| *s).await; } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Accepts connections until `shutdown` completes, handing each to `take` with the slot
/// it holds until it closes; while every slot is taken, nothing is accepted.
async fn accept(
    listener: TcpListener,
    slots: Slots,
    shutdown: impl Future<Output = ()>,
    mut take: impl FnMut(TcpStream, SocketAddr, OwnedSemaphorePermit),
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = slots.accept(&listener) => match accepted {
                Ok((stream, peer, slot)) => take(stream, peer, slot),
                Err(e) => {
                    // Out of descriptors and the like: pause rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Serves `origin` on `listener` until `shutdown` completes, then stops accepting and
/// lets open connections finish their current request.
pub async fn serve(
    listener: TcpListener,
    origin: Arc<Origin>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_limited(listener, origin, shutdown, Limits::default()).await
}

/// [`serve`] within `limits`.
pub async fn serve_limited(
    listener: TcpListener,
    origin: Arc<Origin>,
    shutdown: impl Future<Output = ()>,
    limits: Limits,
) -> std::io::Result<()> {
    let slots = Slots::new(limits.max_connections);
    let limits = Arc::new(limits);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    accept(listener, slots, shutdown, |stream, peer, slot| {
        let conn = connection(
            stream,
            peer,
            origin.clone(),
            limits.clone(),
            stop_rx.clone(),
        );
        conns.spawn(async move {
            conn.await;
            drop(slot);
        });
        // Reap finished connections so the set does not grow without bound.
        while conns.try_join_next().is_some() {}
    })
    .await;
    let _ = stop_tx.send(true);
    if tokio::time::timeout(DRAIN, async { while conns.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        conns.abort_all();
    }
    Ok(())
}

/// A single-threaded runtime on its own thread, running what it is handed until `exit`.
struct Worker {
    handle: tokio::runtime::Handle,
    exited: oneshot::Receiver<()>,
}

impl Worker {
    fn start(i: usize, mut exit: watch::Receiver<bool>) -> std::io::Result<Worker> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        let (exited_tx, exited) = oneshot::channel();
        std::thread::Builder::new()
            .name(format!("origin-{i}"))
            .spawn(move || {
                rt.block_on(async move {
                    let _ = exit.wait_for(|e| *e).await;
                });
                // Dropping the runtime cancels whatever outlived the drain.
                drop(rt);
                let _ = exited_tx.send(());
            })?;
        Ok(Worker { handle, exited })
    }
}

/// Serves `origin` on `listener` from `threads` single-threaded runtimes, one per core, as
/// nginx's workers do. Connections are dealt out in turn, so the threads share the load
/// evenly, and each connection stays on its thread: a request never changes thread, so no
/// wake-up crosses threads (a multi-threaded runtime's cross-thread wake-ups cost more
/// than answering from the cache). Shutdown works as in [`serve`].
pub async fn serve_threads(
    listener: TcpListener,
    origin: Arc<Origin>,
    shutdown: impl Future<Output = ()>,
    threads: usize,
) -> std::io::Result<()> {
    serve_threads_limited(listener, origin, shutdown, threads, Limits::default()).await
}

/// [`serve_threads`] within `limits`; the connection cap counts the connections of every
/// thread together.
pub async fn serve_threads_limited(
    listener: TcpListener,
    origin: Arc<Origin>,
    shutdown: impl Future<Output = ()>,
    threads: usize,
    limits: Limits,
) -> std::io::Result<()> {
    let slots = Slots::new(limits.max_connections);
    let limits = Arc::new(limits);
    let (exit_tx, exit_rx) = watch::channel(false);
    let workers = (0..threads.max(1))
        .map(|i| Worker::start(i, exit_rx.clone()))
        .collect::<std::io::Result<Vec<_>>>()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let tracker = TaskTracker::new();
    let mut next = 0;
    accept(listener, slots, shutdown, |stream, peer, slot| {
        let worker = &workers[next % workers.len()];
        next = next.wrapping_add(1);
        // Hand the socket over unregistered: the worker registers it with its own reactor.
        let Ok(stream) = stream.into_std() else {
            return;
        };
        let (origin, limits, stop) = (origin.clone(), limits.clone(), stop_rx.clone());
        tracker.spawn_on(
            async move {
                if let Ok(stream) = TcpStream::from_std(stream) {
                    connection(stream, peer, origin, limits, stop).await;
                }
                drop(slot);
            },
            &worker.handle,
        );
    })
    .await;
    let _ = stop_tx.send(true);
    tracker.close();
    let _ = tokio::time::timeout(DRAIN, tracker.wait()).await;
    let _ = exit_tx.send(true);
    for w in workers {
        let _ = w.exited.await;
    }
    Ok(())
}
