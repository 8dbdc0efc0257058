//! The node's background tasks. Each runs until its cancellation token fires, logs its own
//! errors, and never holds a lock across an `.await`.

use std::time::Duration;

use shoal_xmlrpc::Value;
use tokio_util::sync::CancellationToken;

use crate::api::Api;

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
    let me = Value::String(api.url().to_string());
    let calls = api.peers().into_iter().map(|peer| {
        let (api, me) = (api.clone(), me.clone());
        async move {
            if let Err(error) = api
                .client()
                .call(&peer.url, "hello", &[me], Duration::from_secs(5), 64 * 1024)
                .await
            {
                tracing::debug!(peer = %peer.url, %error, "introduction failed");
            }
        }
    });
    tokio::select! {
        () = shutdown.cancelled() => {}
        _ = futures_util::future::join_all(calls) => {}
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
