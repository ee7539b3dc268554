//! Plain HTTP/1.1 serving of an [`Origin`] (local mode, tests): the same `handle` the
//! Lambda main calls, behind hyper.

use crate::body::OriginBody;
use crate::handler::Origin;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

/// Largest request body accepted (API Gateway's own limit is close to this).
pub const MAX_REQUEST_BODY: usize = 6 * 1024 * 1024;

/// In-flight requests get this long to finish after shutdown is asked for.
const DRAIN: Duration = Duration::from_secs(10);

fn too_large() -> Response<OriginBody> {
    let mut r = Response::new(OriginBody::from("Payload Too Large\n"));
    *r.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
    r
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
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors and the like: pause rather than spin.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let origin = origin.clone();
                let mut stop = stop_rx.clone();
                conns.spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let origin = origin.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body: Bytes = match Limited::new(body, MAX_REQUEST_BODY).collect().await {
                                Ok(b) => b.to_bytes(),
                                Err(_) => return Ok::<_, Infallible>(too_large()),
                            };
                            Ok(origin.handle(Request::from_parts(parts, body), Some(peer.ip())).await)
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
                });
                // Reap finished connections so the set does not grow without bound.
                while conns.try_join_next().is_some() {}
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    if tokio::time::timeout(DRAIN, async { while conns.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        conns.abort_all();
    }
    Ok(())
}

/// Serves `origin` on `listener` from `threads` single-threaded runtimes, each accepting
/// and answering its own connections, as nginx's workers do: a request never changes
/// thread, so no wake-up crosses threads either (a multi-threaded runtime's cross-thread
/// unparks cost more than a cached answer). Returns once `shutdown` has completed and every
/// thread has drained, or as soon as one thread fails.
pub async fn serve_threads(
    listener: TcpListener,
    origin: Arc<Origin>,
    shutdown: impl Future<Output = ()>,
    threads: usize,
) -> std::io::Result<()> {
    let shared = listener.into_std()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<std::io::Result<()>>();
    let threads = threads.max(1);
    for i in 0..threads {
        let listener = shared.try_clone()?;
        let origin = origin.clone();
        let mut stop = stop_rx.clone();
        let done = done_tx.clone();
        std::thread::Builder::new()
            .name(format!("origin-{i}"))
            .spawn(move || {
                let served = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .and_then(|rt| {
                        rt.block_on(async move {
                            let listener = TcpListener::from_std(listener)?;
                            let stopped = async move {
                                let _ = stop.wait_for(|s| *s).await;
                            };
                            serve(listener, origin, stopped).await
                        })
                    });
                let _ = done.send(served);
            })?;
    }
    drop((done_tx, shared));
    tokio::pin!(shutdown);
    let mut running = threads;
    let mut result = Ok(());
    tokio::select! {
        _ = &mut shutdown => {}
        ended = done_rx.recv() => {
            running -= 1;
            // A thread that stops before shutdown has failed; stop the others too.
            result = ended.unwrap_or(Ok(())).and(Err(std::io::Error::other(
                "an origin thread stopped before shutdown",
            )));
        }
    }
    let _ = stop_tx.send(true);
    while running > 0 {
        match done_rx.recv().await {
            Some(r) => {
                running -= 1;
                if result.is_ok() {
                    result = r;
                }
            }
            None => break,
        }
    }
    result
}
