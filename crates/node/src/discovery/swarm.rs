//! Joining a swarm: while a download of a content id runs, it asks the nodes it fetches from
//! who else fetches that id (`shoal.swarm`, see [`crate::proto::calls::swarm`]), names itself
//! (when its node serves its downloads) so that others find it, and hands each new member to
//! the download as a peer source. Members are asked too, so the swarm spreads like peer
//! exchange: a node that knows only the holder meets every member within a round or two.
//!
//! Bounded: at most [`ASK_PER_ROUND`] nodes a round, rounds [`SWARM_EVERY`] apart (the first
//! twenty half a second apart, so a flash crowd forms at once), at most `4 ×` the engine's peer cap of members
//! handed over in all. A member is only a hint: the engine reads what it holds from its own
//! `/have`, and checks every byte.

use std::collections::HashSet;
use std::time::Duration;

use rand::seq::SliceRandom;
use shoal_index::ContentId;
use tokio::sync::mpsc;

use crate::engine::{MAX_PEER_SOURCES, NewSource};
use crate::net::{Client, NodeClient};
use crate::proto::calls::Swarm;

/// Time between rounds of `shoal.swarm` calls, after the first ones.
pub const SWARM_EVERY: Duration = Duration::from_secs(3);
/// The first [`QUICK_ROUNDS`] rounds come this often: a download is served (and so listed by
/// the nodes it names itself to) only once its size is bound, and a crowd that starts at once
/// should meet within a second or two of that.
const QUICK_EVERY: Duration = Duration::from_millis(500);
const QUICK_ROUNDS: usize = 20;
/// Most nodes asked per round.
pub const ASK_PER_ROUND: usize = 4;

/// Keeps asking `holders` (and the members they name) for other members of `id`'s swarm,
/// handing each new one to `more`; ends when `more` closes. `me` is this node's URL when it
/// serves its downloads; `held` says how many pieces the download holds now.
pub async fn join(
    client: Client,
    id: ContentId,
    me: Option<String>,
    holders: Vec<String>,
    held: impl Fn() -> u64,
    more: mpsc::Sender<NewSource>,
) {
    let mut known: HashSet<String> = holders.iter().cloned().collect();
    known.extend(me.iter().cloned());
    let mut members: Vec<String> = Vec::new();
    let mut round = 0usize;
    loop {
        let wait = if round < QUICK_ROUNDS { QUICK_EVERY } else { SWARM_EVERY };
        round += 1;
        tokio::select! {
            () = more.closed() => return,
            () = tokio::time::sleep(wait) => {}
        }
        // The holders first (they see every member), then members at random.
        let mut ask: Vec<String> = holders.iter().take(ASK_PER_ROUND / 2).cloned().collect();
        members.shuffle(&mut rand::rng());
        ask.extend(members.iter().take(ASK_PER_ROUND - ask.len()).cloned());
        let call = Swarm {
            id,
            url: me.clone(),
            pieces: held(),
        };
        let answers = futures_util::future::join_all(ask.iter().map(|url| {
            let (client, call) = (&client, &call);
            async move { NodeClient::new(client, url).swarm(call).await.unwrap_or_default() }
        }))
        .await;
        for member in answers.into_iter().flatten() {
            if known.len() >= 4 * MAX_PEER_SOURCES || !known.insert(member.url.clone()) {
                continue;
            }
            tracing::debug!(url = %member.url, pieces = member.pieces, "a swarm member");
            members.push(member.url.clone());
            if more.send(NewSource::Peer(member.url)).await.is_err() {
                return;
            }
        }
    }
}
