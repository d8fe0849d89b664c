//! Push: validating and storing posts that arrive by gossip.
//!
//! Every message is checked before gossipsub may forward it: well-formed, on its
//! author's topic, from an author we follow, within limits and time, correctly
//! signed (verified in batches), and not a second version of a post we hold. Then
//! the verdicts go back to gossipsub (accepted posts are forwarded at once), and the
//! accepted posts are stored in one transaction.

use std::collections::HashMap;

use starling_core::{AuthorId, Post, PostError, PostRef};
use starling_net::{MessageAcceptance, MessageId, PeerId};
use starling_store::Inserted;

use crate::metrics::{BAN_TIME, reason};
use crate::node::{Node, NodeEvent};

/// One gossip message awaiting the node's verdict.
pub(crate) struct GossipMsg {
    pub id: MessageId,
    pub source: PeerId,
    pub topic_author: AuthorId,
    pub data: Vec<u8>,
}

impl Node {
    /// Validates, answers, and stores a batch of gossip messages.
    pub(crate) async fn ingest_gossip(&self, batch: Vec<GossipMsg>) {
        let Some(net) = self.inner.net.clone() else {
            return;
        };
        let now = self.inner.clock.now_ms();
        let limits = self.inner.config.limits;
        let metrics = &self.inner.metrics;
        metrics.add("gossip.received", batch.len() as u64);
        tracing::trace!(n = batch.len(), "gossip batch");

        // Cheap checks first; survivors go on to the signature check.
        let mut verdicts: Vec<(MessageId, PeerId, MessageAcceptance)> = Vec::new();
        let mut candidates: Vec<(GossipMsg, Post)> = Vec::new();
        for m in batch {
            let checked: Result<Post, (&'static str, MessageAcceptance)> = (|| {
                let post = Post::decode(&m.data)
                    .map_err(|e| (reason(&PostError::Malformed(e)), MessageAcceptance::Reject))?;
                if post.author != m.topic_author {
                    return Err(("wrong_topic", MessageAcceptance::Reject));
                }
                if post.author == self.inner.me || !self.is_following(&post.author) {
                    // Not a fault of the sender (we may have just unfollowed).
                    return Err(("not_followed", MessageAcceptance::Ignore));
                }
                match post.validate_unsigned(now, &limits) {
                    Ok(()) => Ok(post),
                    // Expiring while in flight happens to honest peers too.
                    Err(e @ PostError::Expired { .. }) => {
                        Err((reason(&e), MessageAcceptance::Ignore))
                    }
                    Err(e) => Err((reason(&e), MessageAcceptance::Reject)),
                }
            })();
            match checked {
                Ok(post) => candidates.push((m, post)),
                Err((why, acceptance)) => {
                    self.count_refusal(why, acceptance, m.source, &net).await;
                    verdicts.push((m.id, m.source, acceptance));
                }
            }
        }

        let posts: Vec<Post> = candidates.iter().map(|(_, p)| p.clone()).collect();
        let signatures_ok = Post::verify_many(&posts);
        // Only a post at or below the newest seq we hold of its author can be a
        // second version of one we hold; newer ones (the usual case) need no read.
        let maybe_held: Vec<PostRef> = {
            let max = self.inner.feed_max.lock().expect("feed_max poisoned");
            posts
                .iter()
                .filter(|p| max.get(&p.author).is_none_or(|m| p.seq <= *m))
                .map(|p| p.id())
                .collect()
        };
        let held = if maybe_held.is_empty() {
            HashMap::new()
        } else {
            match self.inner.store.posts_raw(maybe_held).await {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot check held posts; ignoring the batch");
                    for (m, _) in candidates {
                        verdicts.push((m.id, m.source, MessageAcceptance::Ignore));
                    }
                    self.send_verdicts(&net, verdicts).await;
                    return;
                }
            }
        };

        let mut accepted: Vec<(PeerId, Post)> = Vec::new();
        let mut in_batch: HashMap<PostRef, Vec<u8>> = HashMap::new();
        for ((m, post), sig_ok) in candidates.into_iter().zip(signatures_ok) {
            let id = post.id();
            let known = held.get(&id).or_else(|| in_batch.get(&id));
            let verdict = if !sig_ok {
                Err("bad_signature")
            } else if known.is_some_and(|raw| raw.as_slice() != post.as_bytes()) {
                tracing::warn!(author = %post.author, seq = post.seq, "equivocation: two different posts with one seq");
                Err("equivocation")
            } else {
                Ok(())
            };
            match verdict {
                Ok(()) => {
                    verdicts.push((m.id, m.source, MessageAcceptance::Accept));
                    if known.is_none() {
                        in_batch.insert(id, post.as_bytes().to_vec());
                        accepted.push((m.source, post));
                    }
                }
                Err(why) => {
                    self.count_refusal(why, MessageAcceptance::Reject, m.source, &net)
                        .await;
                    verdicts.push((m.id, m.source, MessageAcceptance::Reject));
                }
            }
        }
        // Forward first (latency), then store.
        self.send_verdicts(&net, verdicts).await;
        if accepted.is_empty() {
            return;
        }
        let sources: HashMap<AuthorId, PeerId> =
            accepted.iter().map(|(s, p)| (p.author, *s)).collect();
        let posts: Vec<Post> = accepted.into_iter().map(|(_, p)| p).collect();
        let (_, positions) = self.store_received(posts, "gossip.accepted").await;
        // A post beyond the next expected seq shows a gap: catch up on that author.
        for (author, synced, max) in positions {
            if synced < max {
                tracing::debug!(%author, synced, max, "gap in feed; catching up");
                self.spawn_catch_up(author, sources.get(&author).copied());
            }
        }
    }

    async fn send_verdicts(
        &self,
        net: &starling_net::Net,
        verdicts: Vec<(MessageId, PeerId, MessageAcceptance)>,
    ) {
        for (id, source, acceptance) in verdicts {
            let _ = net.report(id, source, acceptance).await;
        }
    }

    /// Counts a refused input; rejections are strikes against the peer, and enough
    /// strikes get it banned.
    pub(crate) async fn count_refusal(
        &self,
        why: &str,
        acceptance: MessageAcceptance,
        peer: PeerId,
        net: &starling_net::Net,
    ) {
        let metrics = &self.inner.metrics;
        if acceptance == MessageAcceptance::Reject {
            metrics.reject(why);
            tracing::info!(%peer, reason = why, "rejected a post");
            if metrics.strike(peer) {
                let _ = net.ban(peer, BAN_TIME).await;
            }
        } else {
            metrics.inc(&format!("ignored.{why}"));
        }
    }

    /// Stores validated posts of others; announces the new ones. Returns how many
    /// were new, and the feed positions of their authors (see
    /// [`starling_store::Store::insert_received`]).
    pub(crate) async fn store_received(
        &self,
        posts: Vec<Post>,
        counter: &str,
    ) -> (usize, Vec<(AuthorId, u64, u64)>) {
        let now = self.inner.clock.now_ms();
        let skew = self.inner.config.limits.max_future_skew_ms;
        for p in &posts {
            let _ = self.inner.clock.observe(p.ts, skew);
        }
        let (outcome, positions) = match self.inner.store.insert_received(posts.clone(), now).await
        {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, "cannot store received posts");
                return (0, Vec::new());
            }
        };
        {
            let mut max = self.inner.feed_max.lock().expect("feed_max poisoned");
            for (author, _, m) in &positions {
                max.insert(*author, *m);
            }
        }
        let mut new = 0;
        for (post, result) in posts.iter().zip(outcome) {
            match result {
                Inserted::New => {
                    new += 1;
                    let _ = self.inner.events.send(NodeEvent::Post(self.view(post)));
                }
                Inserted::Duplicate => self.inner.metrics.inc("received.duplicate"),
                Inserted::Conflict(_) => {
                    tracing::warn!(author = %post.author, seq = post.seq, "equivocation detected at insert");
                    self.inner.metrics.reject("equivocation");
                }
            }
        }
        self.inner.metrics.add(counter, new as u64);
        (new, positions)
    }
}
