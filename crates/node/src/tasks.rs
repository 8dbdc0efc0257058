//! The node's background tasks. Each runs until its cancellation token fires, logs its own
//! errors, and never holds a lock across an `.await`.

use tokio_util::sync::CancellationToken;

use crate::service::Api;

/// Scans the share at start and then every `rescan_interval`; `first` hears when the first
/// scan is over.
pub async fn rescan_loop(api: Api, shutdown: CancellationToken, first: tokio::sync::oneshot::Sender<()>) {
    let mut first = Some(first);
    let mut ticks = tokio::time::interval(api.options().rescan_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        match api.rescan().await {
            Ok(report) if report.added + report.changed + report.removed > 0 => {
                tracing::info!(
                    added = report.added,
                    changed = report.changed,
                    removed = report.removed,
                    "share rescanned"
                )
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "rescanning the share failed"),
        }
        if let Some(first) = first.take() {
            let _ = first.send(());
        }
    }
}

/// Says `hello` with this node's URL to every known peer, once at start, so that the
/// introduction goes both ways (the seed's client only learns of its peers).
pub async fn introduce(api: Api, shutdown: CancellationToken) {
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = api.introduce() => {}
    }
}

/// Asks the known shoal peers for the peers they know, every `peer_exchange_interval`.
pub async fn peer_exchange_loop(api: Api, shutdown: CancellationToken) {
    let interval = api.options().peer_exchange_interval;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        let learned = api.exchange_peers().await;
        if learned > 0 {
            tracing::info!(learned, "learnt peers through peer exchange");
        }
    }
}

/// Probes the nodes introduced by `hello` that did not answer yet, each when its backoff is
/// over (see `discovery::candidates`); a tick a second costs a look at a small table.
pub async fn candidates_loop(api: Api, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(crate::discovery::candidates::FIRST_RETRY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = api.retry_candidates() => {}
        }
    }
}

/// Keeps the index current between rescans: the share's watcher reports what changed, and those
/// paths are refreshed at once (a full scan when it lost track). Ends with `shutdown` or when
/// the node is dropped; without a watcher (e.g. the inotify limit is reached) the periodic
/// rescan alone keeps the index.
pub async fn watch_loop(
    api: Api,
    watcher: shoal_index::Watcher,
    batches: std::sync::mpsc::Receiver<shoal_index::Batch>,
    shutdown: CancellationToken,
) {
    // The watcher's channel is a std one: a small thread hands its batches over. It ends when
    // the watcher is dropped (with this task) or this task's receiver is gone.
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let bridge = std::thread::Builder::new().name("shoal-watch-bridge".into()).spawn(move || {
        while let Ok(batch) = batches.recv() {
            if tx.blocking_send(batch).is_err() {
                break;
            }
        }
    });
    if let Err(error) = bridge {
        tracing::warn!(%error, "cannot start the watcher's thread; changes are seen at the next rescan");
        return;
    }
    loop {
        let batch = tokio::select! {
            () = shutdown.cancelled() => break,
            batch = rx.recv() => match batch {
                Some(batch) => batch,
                None => break,
            },
        };
        let paths = match batch {
            shoal_index::Batch::Paths(paths) => Some(paths),
            shoal_index::Batch::Rescan => None,
        };
        match api.refresh(paths).await {
            Ok(report) if report.added + report.changed + report.removed > 0 => {
                tracing::debug!(
                    added = report.added,
                    changed = report.changed,
                    removed = report.removed,
                    "share refreshed"
                )
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "refreshing the share failed"),
        }
    }
    drop(watcher);
}

/// Learns the shoal nodes that announce themselves on the LAN (mDNS) and marks them local.
/// Each joins as a learnt peer would, after it answered; one that stops announcing stays a
/// peer but is no longer marked local. Does nothing when LAN discovery is off.
pub async fn lan_loop(api: Api, iroh: std::sync::Arc<crate::net::iroh::Iroh>, shutdown: CancellationToken) {
    use crate::net::iroh::LanEvent;
    use futures_util::StreamExt;
    let Some(mut events) = iroh.lan_events().await else { return };
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => return,
            event = events.next() => match event {
                Some(event) => event,
                None => return,
            },
        };
        match event {
            LanEvent::Found(id) => {
                let url = format!("iroh://{id}");
                match api.learn_local_peer(&url).await {
                    Ok(()) => tracing::info!(peer = %url, "found a node on the LAN"),
                    Err(error) => tracing::debug!(peer = %url, %error, "a node on the LAN did not answer"),
                }
            }
            LanEvent::Gone(id) => api.forget_local_peer(&format!("iroh://{id}")),
            LanEvent::Other => {}
        }
    }
}
