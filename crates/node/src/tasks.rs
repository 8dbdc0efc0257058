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

/// How often an id is announced again on the DHT (BEP 5 nodes forget peers that stop
/// announcing; 30 minutes is what BitTorrent clients use).
pub const ANNOUNCE_EVERY: std::time::Duration = std::time::Duration::from_secs(30 * 60);
/// Most DHT announces started per second, whatever the share's size: an announce is a lookup
/// of the id's key and a store on its closest nodes (about 40-80 packets).
pub const ANNOUNCES_PER_SECOND: u32 = 4;
/// Announces in flight at once.
const ANNOUNCES_AT_ONCE: usize = 8;
/// How soon a failed announce is tried again.
const ANNOUNCE_RETRY: std::time::Duration = std::time::Duration::from_secs(60);
/// How often the routing table is kept in the state directory.
const SAVE_NODES_EVERY: std::time::Duration = std::time::Duration::from_secs(10 * 60);
/// Longest wait before the served ids are read again (new files are announced within it).
const ANNOUNCE_CHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// Keeps the ids this node serves announced on the DHT: each at most every
/// [`ANNOUNCE_EVERY`], ids never announced first, at most [`ANNOUNCES_PER_SECOND`]; keeps the
/// routing table in the state directory every [`SAVE_NODES_EVERY`] and at shutdown.
///
/// A node reached by id (`nat_as`, its iroh node id) whose DHT node others cannot reach unasked
/// is behind NAT: its address in a BEP 5 announce leads nowhere, so it also puts its node id in
/// each id's record of holders behind NAT ([`crate::net::dht::Dht::add_nat_holder`]).
pub async fn dht_loop(
    api: Api,
    dht: std::sync::Arc<crate::net::dht::Dht>,
    port: u16,
    nat_as: Option<[u8; 32]>,
    shutdown: CancellationToken,
) {
    use futures_util::StreamExt;
    use std::collections::HashMap;
    use std::time::Instant;

    tokio::select! {
        () = shutdown.cancelled() => return,
        _ = dht.bootstrapped() => {}
    }
    let pace = governor::RateLimiter::direct(governor::Quota::per_second(
        std::num::NonZeroU32::new(ANNOUNCES_PER_SECOND).expect("not zero"),
    ));
    let mut last: HashMap<shoal_index::ContentId, Instant> = HashMap::new();
    // When each id was last announced with success (what `shoal dht` counts).
    let mut good: HashMap<shoal_index::ContentId, Instant> = HashMap::new();
    let mut saved = Instant::now();
    loop {
        let served = match api.served_ids().await {
            Ok(ids) => ids,
            Err(error) => {
                tracing::warn!(%error, "reading the share for the DHT failed");
                Vec::new()
            }
        };
        let now = Instant::now();
        {
            let served: std::collections::HashSet<_> = served.iter().collect();
            last.retain(|id, _| served.contains(id));
        }
        let mut due: Vec<(Option<Instant>, shoal_index::ContentId)> = served
            .into_iter()
            .map(|id| (last.get(&id).copied(), id))
            .filter(|(at, _)| at.is_none_or(|at| now.duration_since(at) >= ANNOUNCE_EVERY))
            .collect();
        // Never announced first, then the longest ago.
        due.sort_unstable_by_key(|(at, _)| *at);
        // A batch at a time, so that ids added meanwhile are not kept waiting behind a large
        // share's whole cycle.
        due.truncate(ANNOUNCES_PER_SECOND as usize * ANNOUNCE_CHECK.as_secs() as usize);
        let batch = !due.is_empty();
        let behind_nat = match nat_as {
            Some(me) if batch && !dht.info().await.reachable => Some(me),
            _ => None,
        };
        let announced = futures_util::stream::iter(due)
            .map(|(_, id)| {
                let (dht, pace) = (&dht, &pace);
                async move {
                    pace.until_ready().await;
                    let announced = dht.announce(&id, port).await;
                    let recorded = match behind_nat {
                        Some(me) => dht.add_nat_holder(&id, me).await,
                        None => false,
                    };
                    // Behind NAT the BEP 5 address leads nowhere: the record is what counts.
                    (id, if behind_nat.is_some() { recorded } else { announced })
                }
            })
            .buffer_unordered(ANNOUNCES_AT_ONCE)
            .take_until(shutdown.cancelled())
            .collect::<Vec<_>>()
            .await;
        let now = Instant::now();
        for (id, ok) in announced {
            // A failed announce is tried again after ANNOUNCE_RETRY, not at once.
            let at = if ok {
                Some(now)
            } else {
                now.checked_sub(ANNOUNCE_EVERY - ANNOUNCE_RETRY)
            };
            last.insert(id, at.unwrap_or(now));
            if ok {
                good.insert(id, now);
            }
        }
        good.retain(|id, at| last.contains_key(id) && now.duration_since(*at) < 2 * ANNOUNCE_EVERY);
        dht.set_announced_ids(good.len() as u64);
        if saved.elapsed() >= SAVE_NODES_EVERY {
            dht.save_nodes().await;
            saved = Instant::now();
        }
        if shutdown.is_cancelled() {
            break;
        }
        if !batch {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(ANNOUNCE_CHECK) => {}
            }
        }
    }
    dht.save_nodes().await;
}
