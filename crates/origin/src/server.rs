//! Plain HTTP/1.1 serving of an [`Origin`] (local mode, tests): the same `handle` the
//! Lambda main calls, behind hyper.

use crate::body::OriginBody;
use crate::handler::Origin;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;
use tokio_util::task::TaskTracker;

/// Largest request body accepted (API Gateway's own limit is close to this).
pub const MAX_REQUEST_BODY: usize = 6 * 1024 * 1024;

/// In-flight requests get this long to finish after shutdown is asked for.
const DRAIN: Duration = Duration::from_secs(10);

fn too_large() -> Response<OriginBody> {
    let mut r = Response::new(OriginBody::from("Payload Too Large\n"));
    *r.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
    r
}

/// Answers one connection until it closes, or until `stop` turns true; then it finishes
/// the request in flight and closes.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    origin: Arc<Origin>,
    mut stop: watch::Receiver<bool>,
) {
    // Responses are written whole; nothing is gained by holding a segment back.
    let _ = stream.set_nodelay(true);
    // Requests borrow the connection's handle on the origin: a clone per request would be
    // a write to a counter every serving thread shares.
    let origin: &Origin = &origin;
    let svc = service_fn(move |req: Request<Incoming>| {
        async move {
            let (parts, body) = req.into_parts();
            let body: Bytes = if body.is_end_stream() {
                // Most requests (GET, HEAD) carry no body: nothing to collect.
                Bytes::new()
            } else {
                match Limited::new(body, MAX_REQUEST_BODY).collect().await {
                    Ok(b) => b.to_bytes(),
                    Err(_) => return Ok::<_, Infallible>(too_large()),
                }
            };
            Ok(origin
                .handle(Request::from_parts(parts, body), Some(peer.ip()))
                .await)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .serve_connection(TokioIo::new(stream), svc);
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

/// Accepts connections until `shutdown` completes, handing each to `take`.
async fn accept(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    mut take: impl FnMut(TcpStream, SocketAddr),
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => take(stream, peer),
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
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    accept(listener, shutdown, |stream, peer| {
        conns.spawn(connection(stream, peer, origin.clone(), stop_rx.clone()));
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
    let (exit_tx, exit_rx) = watch::channel(false);
    let workers = (0..threads.max(1))
        .map(|i| Worker::start(i, exit_rx.clone()))
        .collect::<std::io::Result<Vec<_>>>()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let tracker = TaskTracker::new();
    let mut next = 0;
    accept(listener, shutdown, |stream, peer| {
        let worker = &workers[next % workers.len()];
        next = next.wrapping_add(1);
        // Hand the socket over unregistered: the worker registers it with its own reactor.
        let Ok(stream) = stream.into_std() else {
            return;
        };
        let (origin, stop) = (origin.clone(), stop_rx.clone());
        tracker.spawn_on(
            async move {
                if let Ok(stream) = TcpStream::from_std(stream) {
                    connection(stream, peer, origin, stop).await;
                }
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
