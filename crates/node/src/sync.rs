//! Pull: `/starling/sync/1`, serving and catching up.
//!
//! A node catches up on an author it follows on start, when a peer connects, and
//! when it sees a gap in the author's seq. It asks the author first, then (if the
//! author is unreachable) up to three providers of the author's feed in parallel.
//! Pages are pipelined: the next page is requested while the current one is
//! verified (in one batch) and stored (in one transaction).

use std::time::Duration;

use futures::future::join_all;
use starling_core::records::feed_key;
use starling_core::{AuthorId, Post, PostError};
use starling_net::protocol::MAX_SYNC_PAGE;
use starling_net::{MessageAcceptance, PeerId, ResponseChannel, SyncRequest, SyncResponse};

use crate::metrics::reason;
use crate::node::Node;

/// Providers asked at once when the author is unreachable.
const PROVIDER_FANOUT: usize = 3;

impl Node {
    /// Answers a sync request from our store: unexpired posts only.
    pub(crate) async fn serve_sync(
        &self,
        peer: PeerId,
        req: SyncRequest,
        channel: ResponseChannel<SyncResponse>,
    ) {
        let Some(net) = self.inner.net.clone() else {
            return;
        };
        let response = match AuthorId::from_slice(&req.author) {
            Err(_) => {
                self.inner.metrics.reject("bad_sync_request");
                SyncResponse::Error {
                    message: "author is not a valid key".into(),
                }
            }
            Ok(author) => {
                let limit = req.limit.clamp(1, MAX_SYNC_PAGE) as usize;
                match self
                    .inner
                    .store
                    .posts_after(author, req.after_seq, self.inner.clock.now_ms(), limit + 1)
                    .await
                {
                    Ok(mut posts) => {
                        let more = posts.len() > limit;
                        posts.truncate(limit);
                        self.inner
                            .metrics
                            .add("sync.served_posts", posts.len() as u64);
                        SyncResponse::Posts {
                            posts: posts
                                .into_iter()
                                .map(|p| serde_bytes::ByteBuf::from(p.into_bytes()))
                                .collect(),
                            more,
                        }
                    }
                    Err(e) => SyncResponse::Error {
                        message: format!("store error: {e}"),
                    },
                }
            }
        };
        tracing::trace!(%peer, "served sync request");
        let _ = net.respond_sync(channel, response).await;
    }

    pub(crate) fn spawn_catch_up(&self, author: AuthorId, hint: Option<PeerId>) {
        let node = self.clone();
        self.spawn(async move { node.catch_up(author, hint).await });
    }

    /// Brings our copy of `author`'s feed up to date. One round per author at a time;
    /// a request during a round schedules one more round after it.
    pub async fn catch_up(&self, author: AuthorId, hint: Option<PeerId>) {
        if author == self.inner.me || !self.is_following(&author) {
            return;
        }
        {
            let mut s = self.inner.syncing.lock().expect("syncing poisoned");
            if let Some(again) = s.get_mut(&author) {
                *again = true;
                return;
            }
            s.insert(author, false);
        }
        loop {
            self.catch_up_round(author, hint).await;
            let mut s = self.inner.syncing.lock().expect("syncing poisoned");
            if s.get(&author) == Some(&true) {
                s.insert(author, false);
            } else {
                s.remove(&author);
                break;
            }
        }
    }

    async fn catch_up_round(&self, author: AuthorId, hint: Option<PeerId>) {
        let Some(net) = self.inner.net.clone() else {
            return;
        };
        let after = match self.inner.store.following_of(author).await {
            Ok(Some(row)) => row.synced_seq,
            _ => return,
        };
        let author_peer = author.peer_id();
        // The author first (or the peer that showed us the gap, if connected).
        let mut first = vec![author_peer];
        if let Some(h) = hint.filter(|h| *h != author_peer && *h != net.local_peer_id()) {
            first.push(h);
        }
        for peer in first {
            if let Ok(n) = self.sync_from(peer, author, after).await {
                tracing::debug!(%author, %peer, new = n, "caught up");
                return;
            }
        }
        // The author is away: ask the providers of the feed (its followers).
        let providers = match net.providers(feed_key(&author)).await {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(%author, error = %e, "no providers found");
                return;
            }
        };
        let candidates: Vec<PeerId> = providers
            .into_iter()
            .filter(|p| *p != author_peer && *p != net.local_peer_id())
            .take(PROVIDER_FANOUT)
            .collect();
        let results = join_all(candidates.iter().map(|p| self.sync_from(*p, author, after))).await;
        let new: usize = results.iter().filter_map(|r| r.as_ref().ok()).sum();
        tracing::debug!(%author, providers = candidates.len(), new, "caught up from providers");
    }

    /// Pulls every page of `author`'s feed after `after` from `peer`. Returns how
    /// many new posts were stored.
    pub(crate) async fn sync_from(
        &self,
        peer: PeerId,
        author: AuthorId,
        after: u64,
    ) -> Result<usize, ()> {
        let net = self.inner.net.clone().ok_or(())?;
        let request = |after_seq| SyncRequest {
            author: author.as_bytes().to_vec(),
            after_seq,
            limit: MAX_SYNC_PAGE,
        };
        let fetch = |after_seq| {
            let net = net.clone();
            async move {
                match tokio::time::timeout(
                    Duration::from_secs(15),
                    net.sync(peer, request(after_seq)),
                )
                .await
                {
                    Ok(Ok(r)) => Ok(r),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("timed out".to_string()),
                }
            }
        };
        let mut new = 0;
        let mut after_seq = after;
        let mut any_page = false;
        let mut response = fetch(after).await;
        loop {
            let (posts, more) = match response {
                Ok(SyncResponse::Posts { posts, more }) => (posts, more),
                Ok(SyncResponse::Error { message }) => {
                    tracing::debug!(%peer, %author, %message, "sync refused");
                    return if any_page { Ok(new) } else { Err(()) };
                }
                Err(e) => {
                    tracing::debug!(%peer, %author, error = %e, "sync request failed");
                    return if any_page { Ok(new) } else { Err(()) };
                }
            };
            any_page = true;
            // The highest seq in the page (for the next request), read without trust:
            // the next request only asks for more, it never skips what we lack.
            let decoded: Vec<Option<Post>> = posts.iter().map(|b| Post::decode(b).ok()).collect();
            let page_max = decoded
                .iter()
                .flatten()
                .filter(|p| p.author == author)
                .map(|p| p.seq)
                .max();
            let ingest = self.ingest_synced(peer, author, posts.len(), decoded);
            match page_max {
                // Ingest this page while the next one is on its way.
                Some(m) if more && m > after_seq => {
                    after_seq = m;
                    let (n, next) = futures::join!(ingest, fetch(m));
                    new += n;
                    response = next;
                }
                _ => {
                    new += ingest.await;
                    break;
                }
            }
        }
        // Everything this source had is in: move our position over what we hold.
        if let Ok((synced, max)) = self.inner.store.advance_synced_seq(author).await
            && max > synced
        {
            // Posts the source lacks (expired, or never seen): do not ask again and again.
            let _ = self.inner.store.set_synced_seq(author, max).await;
        }
        Ok(new)
    }

    /// Validates one sync page (batch-verified) and stores what passes.
    async fn ingest_synced(
        &self,
        peer: PeerId,
        author: AuthorId,
        n: usize,
        decoded: Vec<Option<Post>>,
    ) -> usize {
        let Some(net) = self.inner.net.clone() else {
            return 0;
        };
        let now = self.inner.clock.now_ms();
        let limits = self.inner.config.limits;
        self.inner.metrics.add("sync.received", n as u64);
        let mut ok = Vec::with_capacity(n);
        for p in decoded {
            let checked = match p {
                None => Err("malformed"),
                Some(p) if p.author != author => Err("wrong_author"),
                Some(p) => match p.validate_unsigned(now, &limits) {
                    Ok(()) => Ok(p),
                    // An honest peer may serve a post that expires in flight.
                    Err(PostError::Expired { .. }) => {
                        self.inner.metrics.inc("ignored.expired");
                        continue;
                    }
                    Err(e) => Err(reason(&e)),
                },
            };
            match checked {
                Ok(p) => ok.push(p),
                Err(why) => {
                    self.count_refusal(why, MessageAcceptance::Reject, peer, &net)
                        .await
                }
            }
        }
        let sig_ok = Post::verify_many(&ok);
        let mut good = Vec::with_capacity(ok.len());
        for (p, valid) in ok.into_iter().zip(sig_ok) {
            if valid {
                good.push(p);
            } else {
                self.count_refusal("bad_signature", MessageAcceptance::Reject, peer, &net)
                    .await;
            }
        }
        if good.is_empty() {
            return 0;
        }
        self.store_received(good, "sync.accepted").await.0
    }
}
