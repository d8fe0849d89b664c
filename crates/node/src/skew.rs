//! Telling an author that its posts come from the future.
//!
//! A follower refuses a post stamped more than 30 s past its own clock
//! (`from_future`: counted, no strike: a wrong clock is no attack). Refusing
//! silently would leave the author posting into the void, so the follower tells it:
//! a `ClockNotice` carrying the refused post and the follower's time, at most one
//! per author per minute, and only for a post whose signature is the author's (a
//! forger cannot make us pester anyone). The author believes a notice only about its
//! own signed post, really that far ahead of the follower's time, and shows a
//! warning (status, CLI, web UI) until its clock is corrected (an SNTP
//! synchronisation after the last notice) or ten minutes pass without one.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use starling_core::{AuthorId, Post};
use starling_net::{PeerId, SocialRequest, SocialResponse};
use tokio::sync::mpsc;

use crate::online::Online;

/// Notices sent to one author: at most one per this long.
const NOTICE_EVERY: Duration = Duration::from_secs(60);
/// Authors remembered as told (the oldest are forgotten first).
const MAX_TOLD: usize = 1024;
/// Refused posts waiting to be sent back.
const QUEUE: usize = 64;
/// How long a warning stands without a new notice.
const WARNING_MS: u64 = 10 * 60 * 1000;
/// Peers named in a warning.
const MAX_PEERS: usize = 16;

/// The warning shown to an author whose followers refuse its posts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FutureRefusals {
    /// Peers that said so (up to 16).
    pub peers: usize,
    /// How far ahead of the last of them our post was, ms.
    pub ahead_ms: u64,
    /// When the last notice came (Unix ms, corrected).
    pub last_at: u64,
}

/// A refused post to send back to its author.
type Refused = (AuthorId, Vec<u8>);

pub(crate) struct Skew {
    outgoing: mpsc::Sender<Refused>,
    queued: Mutex<Option<mpsc::Receiver<Refused>>>,
    told: Mutex<HashMap<AuthorId, Instant>>,
    heard: Mutex<Heard>,
}

#[derive(Default)]
struct Heard {
    peers: BTreeSet<PeerId>,
    ahead_ms: u64,
    last_at: u64,
}

impl Skew {
    pub(crate) fn new() -> Self {
        let (outgoing, queued) = mpsc::channel(QUEUE);
        Self {
            outgoing,
            queued: Mutex::new(Some(queued)),
            told: Mutex::new(HashMap::new()),
            heard: Mutex::new(Heard::default()),
        }
    }

    /// A post of `author` was refused as future-dated: queue a notice, unless the
    /// author was told within the last minute (or the queue is full).
    pub(crate) fn early(&self, author: AuthorId, bytes: &[u8]) {
        let now = Instant::now();
        let mut told = self.told.lock().expect("told poisoned");
        if told
            .get(&author)
            .is_some_and(|t| now.duration_since(*t) < NOTICE_EVERY)
        {
            return;
        }
        if told.len() >= MAX_TOLD {
            told.retain(|_, t| now.duration_since(*t) < NOTICE_EVERY);
            if told.len() >= MAX_TOLD {
                return;
            }
        }
        if self.outgoing.try_send((author, bytes.to_vec())).is_ok() {
            told.insert(author, now);
        }
    }

    /// The refused posts to send back (taken once, by the network part).
    pub(crate) fn take_queue(&self) -> Option<mpsc::Receiver<Refused>> {
        self.queued.lock().expect("queue poisoned").take()
    }

    /// A peer told us our post was `ahead_ms` past its clock.
    fn heard(&self, peer: PeerId, ahead_ms: u64, now_ms: u64) {
        let mut h = self.heard.lock().expect("heard poisoned");
        if h.last_at + WARNING_MS < now_ms {
            h.peers.clear();
        }
        if h.peers.len() < MAX_PEERS {
            h.peers.insert(peer);
        }
        h.ahead_ms = ahead_ms;
        h.last_at = now_ms;
    }

    /// The warning, while it stands: a notice within the last ten minutes, and no
    /// clock synchronisation since (`synced_at`).
    pub(crate) fn warning(&self, now_ms: u64, synced_at: Option<u64>) -> Option<FutureRefusals> {
        let h = self.heard.lock().expect("heard poisoned");
        let standing = !h.peers.is_empty()
            && h.last_at + WARNING_MS >= now_ms
            && synced_at.is_none_or(|s| s < h.last_at);
        standing.then(|| FutureRefusals {
            peers: h.peers.len(),
            ahead_ms: h.ahead_ms,
            last_at: h.last_at,
        })
    }
}

impl Online {
    /// Sends the queued notices, one at a time, until the node stops.
    pub(crate) async fn run_clock_notices(self: std::sync::Arc<Self>) {
        let s = &self.shared;
        let Some(mut queued) = s.skew.take_queue() else {
            return;
        };
        while let Some((author, bytes)) = queued.recv().await {
            // Only the author's own signed post: a forgery is nobody's fault to tell.
            let genuine =
                Post::decode(&bytes).is_ok_and(|p| p.author == author && p.verify().is_ok());
            if !genuine {
                continue;
            }
            let req = SocialRequest::ClockNotice {
                post: bytes,
                now_ms: s.clock.now_ms(),
            };
            match self.net.social(author.peer_id(), req).await {
                Ok(SocialResponse::Accepted) => s.metrics.inc("clock_notices.sent"),
                Ok(_) | Err(_) => s.metrics.inc("clock_notices.failed"),
            }
        }
    }

    /// A peer says our post came from the future: believed only for our own signed
    /// post, and only if it really was that far ahead of the peer's time.
    pub(crate) fn answer_clock_notice(
        &self,
        peer: PeerId,
        post: &[u8],
        their_ms: u64,
    ) -> SocialResponse {
        let s = &self.shared;
        let refused = |reason: &str| {
            s.metrics.inc("clock_notices.refused");
            SocialResponse::Refused {
                reason: reason.to_string(),
            }
        };
        let Ok(p) = Post::decode(post) else {
            return refused("not a post");
        };
        if p.author != s.me || p.verify().is_err() {
            return refused("not a post of ours");
        }
        let ahead = p.ts.millis().saturating_sub(their_ms);
        if ahead <= s.config.limits.max_future_skew_ms {
            return refused("that post is not ahead of your clock");
        }
        s.metrics.inc("clock_notices.received");
        tracing::warn!(%peer, ahead_ms = ahead, seq = p.seq, "a follower refuses our posts as future-dated: is this machine's clock ahead?");
        s.skew.heard(peer, ahead, s.clock.now_ms());
        SocialResponse::Accepted
    }
}
