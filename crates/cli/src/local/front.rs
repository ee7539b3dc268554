//! A region's front in local mode, playing API Gateway in front of Lambda instances: it
//! listens on the region's port and hands each connection to one of the region's origin
//! instances in turn, so a notification (one request) reaches one instance. While the
//! region is out ([`super::drill`]) the port is closed and open connections are cut: the
//! region is unreachable, not failing.

use super::drill::RegionGate;
use skyhost_origin::Origin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How often the drill state is looked at.
const LOOK: Duration = Duration::from_millis(50);

/// Serves the front of `gate`'s region on `port` (first listener `listener`) until `stop`.
pub async fn serve(
    listener: TcpListener,
    port: u16,
    instances: Vec<u16>,
    gate: RegionGate,
    mut stop: watch::Receiver<bool>,
) {
    let mut listener = Some(listener);
    // Raised when the region goes out: every proxied connection ends.
    let (cut_tx, _) = watch::channel(0u64);
    let mut next = 0usize;
    loop {
        if gate.is_out() {
            if listener.take().is_some() {
                cut_tx.send_modify(|epoch| *epoch += 1);
                tracing::warn!(region = %gate.region(), "region out: its front stops answering");
            }
        } else if listener.is_none() {
            match TcpListener::bind(("127.0.0.1", port)).await {
                Ok(l) => {
                    tracing::info!(region = %gate.region(), "region restored: its front answers again");
                    listener = Some(l);
                }
                Err(e) => tracing::warn!(port, error = %e, "cannot listen again yet"),
            }
        }
        let accepted = match &listener {
            Some(l) => tokio::select! {
                a = l.accept() => Some(a),
                _ = tokio::time::sleep(LOOK) => None,
                _ = stop.changed() => return,
            },
            None => tokio::select! {
                _ = tokio::time::sleep(LOOK) => None,
                _ = stop.changed() => return,
            },
        };
        let Some(Ok((stream, _))) = accepted else {
            continue;
        };
        let Some(&to) = instances.get(next % instances.len().max(1)) else {
            continue;
        };
        next = next.wrapping_add(1);
        let (cut, stop) = (cut_tx.subscribe(), stop.clone());
        tokio::spawn(proxy(stream, to, cut, stop));
    }
}

/// Copies bytes both ways between a client and an instance until either side closes, the
/// region goes out, or local mode stops.
async fn proxy(
    mut client: TcpStream,
    to: u16,
    mut cut: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let _ = client.set_nodelay(true);
    let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", to)).await else {
        return;
    };
    let _ = upstream.set_nodelay(true);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
        _ = cut.changed() => {}
        _ = stop.changed() => {}
    }
}

/// One instance per region: it listens on the region's port itself, with no hop in
/// between (what `make bench` measures). While the region is out its server is stopped,
/// so the port is closed and its connections end; on restore it listens again.
pub async fn serve_direct(
    listener: TcpListener,
    port: u16,
    origin: Arc<Origin>,
    threads: usize,
    gate: RegionGate,
    mut stop: watch::Receiver<bool>,
) {
    let mut listener = Some(listener);
    loop {
        if let Some(l) = listener.take() {
            let (off_tx, mut off_rx) = watch::channel(false);
            let shutdown = async move {
                let _ = off_rx.wait_for(|off| *off).await;
            };
            let server = tokio::spawn(skyhost_origin::server::serve_threads(
                l,
                origin.clone(),
                shutdown,
                threads,
            ));
            let stopping = loop {
                tokio::select! {
                    _ = tokio::time::sleep(LOOK) => if gate.is_out() { break false },
                    _ = stop.changed() => break true,
                }
            };
            let _ = off_tx.send(true);
            let _ = server.await;
            if stopping {
                return;
            }
            tracing::warn!(region = %gate.region(), "region out: its origin stops answering");
        }
        if !gate.is_out() {
            match TcpListener::bind(("127.0.0.1", port)).await {
                Ok(l) => {
                    tracing::info!(region = %gate.region(), "region restored: its origin answers again");
                    listener = Some(l);
                    continue;
                }
                Err(e) => tracing::warn!(port, error = %e, "cannot listen again yet"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(LOOK) => {}
            _ = stop.changed() => return,
        }
    }
}
