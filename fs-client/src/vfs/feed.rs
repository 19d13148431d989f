//! The change feed: how a mount learns what changed on the server (from
//! another device, or this one's own requests coming back).
//!
//! Every second (at once while pages come back full) the watcher asks for
//! the changes since the last sequence number it saw. For each change it
//! drops the cached state of the node and of the directory whose listing
//! changed, and tells the complete listings (`names`), which keep their
//! entries for this mount's own echoes. A poll that came back short vouches
//! for every state verified before it was sent (`Table::feed_polled`): the
//! server had nothing newer.
//!
//! Dropped states are then fetched again in bulk (`POST /v1/nodes/batch`,
//! up to [`FEED_PAGE`] per request), each checked like any fetched record
//! (sealed to its node and version, never older than a version seen). Most
//! changes are this mount's own commits, and without the bulk fetch each of
//! them would cost its node a request of its own at the next `stat`,
//! lookup or `ls`: after writing 20k files, 20k requests. A node the bulk
//! fetch does not bring back (deleted, unreadable, or the request failed)
//! stays dropped and is fetched on demand, as before.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::NodeId;
use common::api::tree::NodeIds;

use super::core::{Core, lock};
use super::remote::Budget;
use super::seal;
use crate::api::VaultApi;

/// Changes asked for per poll of the change feed (and nodes per bulk fetch,
/// the server's limit for `POST /v1/nodes/batch`).
pub(crate) const FEED_PAGE: u32 = 1000;

/// Polls the change feed and drops cached state of nodes that changed, so
/// the next `stat` or `open` sees them, then fetches what it dropped in
/// bulk; a complete poll vouches for the states it did not drop.
pub(crate) async fn watch_changes<A: VaultApi + 'static>(core: Arc<Core<A>>) {
    let mut behind = false;
    loop {
        if !behind {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        if core.stopping.load(Ordering::Acquire) {
            return;
        }
        let since = core.change_seq.load(Ordering::Acquire);
        let sent = std::time::Instant::now();
        let page = core
            .remote
            .call(Budget::Interactive, |api, t| async move {
                api.changes(&t, since, Some(FEED_PAGE)).await
            })
            .await;
        let Ok(page) = page else { continue };
        let mut dropped = Vec::new();
        {
            let mut t = lock(&core.table);
            for ch in &page.changes {
                if t.invalidate(ch.node) {
                    dropped.push(ch.node);
                }
                if let Some(p) = ch.parent {
                    if t.invalidate(p) {
                        dropped.push(p);
                    }
                    t.names.feed(ch.node, p);
                }
            }
            // A full page may have more behind it: only a short one
            // vouches for everything up to when it was asked for. Catch up
            // at once.
            behind = page.changes.len() >= FEED_PAGE as usize;
            if !behind {
                t.feed_polled(sent);
            }
        }
        let next = page.changes.last().map_or(page.latest, |c| c.seq);
        core.change_seq.store(next.max(since), Ordering::Release);
        refetch(&core, dropped).await;
    }
}

/// Fetches the current state of `ids` (dropped by the feed) in bulk and
/// records what comes back; what does not stays dropped.
async fn refetch<A: VaultApi + 'static>(core: &Arc<Core<A>>, mut ids: Vec<NodeId>) {
    let mut seen = HashSet::with_capacity(ids.len());
    ids.retain(|id| seen.insert(*id));
    for chunk in ids.chunks(FEED_PAGE as usize) {
        let since = core.tick();
        let req = NodeIds {
            ids: chunk.to_vec(),
        };
        let Ok(infos) = core
            .remote
            .call(Budget::Interactive, |api, t| {
                let req = req.clone();
                async move { api.nodes(&t, &req).await }
            })
            .await
        else {
            return;
        };
        let asked: HashSet<NodeId> = chunk.iter().copied().collect();
        // Opened outside the table's lock; a record that does not open
        // (tampered, or sealed to another node) is left for the on-demand
        // fetch to report.
        let opened: Vec<_> = infos
            .into_iter()
            .filter(|info| asked.contains(&info.id))
            .filter_map(|info| seal::open(&core.keys, &info).ok().map(|a| (info, a)))
            .collect();
        let mut t = lock(&core.table);
        for (info, attrs) in opened {
            if let Some(ino) = t.ino_of(info.id) {
                // A rollback is refused here as on any fetch; the state
                // then stays dropped.
                let _ = t.observe(ino, &info, attrs, since);
            }
        }
    }
}
