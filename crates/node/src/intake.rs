//! The intake: the one way a received post enters the node, whatever carried it
//! (gossip push, sync pull). It runs core's checks ([`starling_core::intake`]),
//! reads from the store only what they need (the held version of posts at or below
//! the newest seq held of their author), counts every refusal once by its code,
//! stores what is fresh in one transaction, announces it, and reports the gaps it
//! saw so catch-up can fill them.
//!
//! It owns the newest seq held per author (`feed_max`), which lets new posts (the
//! usual case) pass without a database read.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use starling_core::{
    AuthorId, Channel, Intake as Checks, Post, PostError, PostRef, Refusal, Verdict,
};
use starling_net::PeerId;
use starling_store::{Inserted, Queued};

use crate::node::Shared;
use crate::trace::Stage;

/// Batches checked and queued for the store at once, by one taker (gossip's): the
/// next batch is checked while they commit, and waits for the oldest beyond this.
pub(crate) const STORING_BATCHES: usize = 8;

/// One received post: its bytes, the channel it came on, who handed it to us.
pub(crate) struct Arrival {
    pub bytes: Vec<u8>,
    pub channel: Channel,
    pub from: PeerId,
    /// When the network took it in ([`starling_net::mono_ns`]; 0: not known).
    pub received_ns: u64,
}

/// What became of a batch.
pub(crate) struct Outcome {
    /// One per arrival, in order.
    pub verdicts: Vec<Verdict>,
    /// Newly stored posts.
    pub stored: usize,
    /// Authors whose feed now has a gap (a post beyond the next expected seq), with
    /// the peer that showed it to us.
    pub gaps: Vec<(AuthorId, PeerId)>,
    /// Peers that have earned a ban with this batch.
    pub to_ban: Vec<PeerId>,
}

impl Outcome {
    /// Whether any arrival was turned down.
    pub fn any_refused(&self) -> bool {
        self.verdicts
            .iter()
            .any(|v| matches!(v, Verdict::Refused(_)))
    }
}

/// A checked batch: final verdicts, and the fresh posts still to store.
pub(crate) struct Checked {
    /// One per arrival, in order.
    pub verdicts: Vec<Verdict>,
    fresh: Vec<Post>,
    /// Equivocations seen: the post, the version seen first, the second.
    proofs: Vec<(PostRef, Vec<u8>, Vec<u8>)>,
    /// Who showed us each author's fresh posts (for gap catch-up).
    shown_by: BTreeMap<AuthorId, PeerId>,
    to_ban: Vec<PeerId>,
    now: u64,
    transport: Transport,
}

impl Checked {
    /// Keeps the proofs, stores the fresh posts, and reports the gaps.
    pub(crate) async fn store(self, intake: &Intake, shared: &Shared) -> Outcome {
        self.submit(intake, shared).await.done(intake, shared).await
    }

    /// Keeps the proofs and queues the fresh posts for the store; resolves once they
    /// are queued. [`Storing::done`] waits for the commit and does the rest, so the
    /// next batch can be checked meanwhile.
    pub(crate) async fn submit(self, intake: &Intake, shared: &Shared) -> Storing {
        let Checked {
            verdicts,
            fresh,
            proofs,
            shown_by,
            to_ban,
            now,
            transport,
        } = self;
        for (id, first, second) in proofs {
            flag(shared, id, first, second, now).await;
        }
        let queued = intake.queue(shared, &fresh).await;
        Storing {
            verdicts,
            fresh,
            queued,
            shown_by,
            to_ban,
            transport,
        }
    }
}

/// A checked batch whose fresh posts are queued for the store.
pub(crate) struct Storing {
    verdicts: Vec<Verdict>,
    fresh: Vec<Post>,
    /// `None`: nothing to store, or it could not be queued.
    queued: Option<Queued<Stored>>,
    shown_by: BTreeMap<AuthorId, PeerId>,
    to_ban: Vec<PeerId>,
    transport: Transport,
}

/// What the store says of a batch: one result per post, and the feed positions of
/// their authors (see [`starling_store::Store::insert_received`]).
type Stored = (Vec<Inserted>, Vec<(AuthorId, u64, u64)>);

impl Storing {
    /// Waits for the commit, announces the new posts, and reports the gaps.
    pub(crate) async fn done(self, intake: &Intake, shared: &Shared) -> Outcome {
        let (stored, positions) = intake
            .stored(shared, self.fresh, self.queued, self.transport)
            .await;
        let shown_by = self.shown_by;
        let gaps = positions
            .into_iter()
            .filter(|(_, synced, max)| synced < max)
            .filter_map(|(author, synced, max)| {
                tracing::debug!(%author, synced, max, "gap in feed");
                shown_by.get(&author).map(|p| (author, *p))
            })
            .collect();
        Outcome {
            verdicts: self.verdicts,
            stored,
            gaps,
            to_ban: self.to_ban,
        }
    }
}

pub(crate) struct Intake {
    checks: Checks,
    /// Highest seq stored per followed author, as of our last insert.
    feed_max: Mutex<HashMap<AuthorId, u64>>,
    /// Posts found fresh and queued for the store, until their commit: the checks
    /// of the next batches see them as held. Bounded by the batches in flight.
    pending: Mutex<HashMap<PostRef, Vec<u8>>>,
}

impl Intake {
    pub(crate) fn new(limits: starling_core::Limits) -> Self {
        Self {
            checks: Checks::new(limits),
            feed_max: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// Checks, counts, stores and announces a batch. `transport` names it in the
    /// counters.
    pub(crate) async fn receive(
        &self,
        shared: &Shared,
        batch: Vec<Arrival>,
        transport: Transport,
    ) -> Outcome {
        self.check(shared, batch, transport)
            .await
            .store(self, shared)
            .await
    }

    /// The first half of [`Intake::receive`]: checks and counts a batch; the
    /// verdicts are final (gossip reports them before the posts are stored, so
    /// forwarding never waits for a commit). [`Checked::store`] does the rest.
    pub(crate) async fn check(
        &self,
        shared: &Shared,
        batch: Vec<Arrival>,
        transport: Transport,
    ) -> Checked {
        let now = shared.clock.now_ms();
        shared.metrics.add(transport.received(), batch.len() as u64);
        let mut verdicts: Vec<Option<Verdict>> = Vec::with_capacity(batch.len());
        let mut screened = Vec::new();
        for a in &batch {
            let takes =
                a.channel.author() != shared.me && shared.follows.contains(&a.channel.author());
            match self.checks.screen(&a.bytes, a.channel, takes, now) {
                Ok(post) => {
                    screened.push(post);
                    verdicts.push(None);
                }
                Err(r) => verdicts.push(Some(Verdict::Refused(r))),
            }
        }
        // Only a post at or below the newest seq held of its author can be a second
        // version of one we hold; newer ones need no read.
        let maybe_held: Vec<PostRef> = {
            let max = self.feed_max.lock().expect("feed_max poisoned");
            screened
                .iter()
                .filter(|p| max.get(&p.author).is_none_or(|m| p.seq <= *m))
                .map(|p| p.id())
                .collect()
        };
        let held = if maybe_held.is_empty() {
            Ok(HashMap::new())
        } else {
            shared.store.posts_raw(maybe_held).await
        };
        let mut held = match held {
            Ok(held) => held,
            Err(e) => {
                // Cannot tell a second version from a new post: take none of them now
                // (catch-up fetches them again), and blame nobody.
                tracing::warn!(error = %e, "cannot read held posts; leaving the batch");
                return Checked {
                    verdicts: Vec::new(),
                    fresh: Vec::new(),
                    proofs: Vec::new(),
                    shown_by: BTreeMap::new(),
                    to_ban: Vec::new(),
                    now,
                    transport,
                };
            }
        };
        {
            // Posts of batches still being stored count as held.
            let pending = self.pending.lock().expect("pending poisoned");
            if !pending.is_empty() {
                for p in &screened {
                    let id = p.id();
                    if let Some(bytes) = pending.get(&id) {
                        held.entry(id).or_insert_with(|| bytes.clone());
                    }
                }
            }
        }
        let mut settled = self
            .checks
            .settle(screened, |id| held.get(id).map(|v| v.as_slice()))
            .into_iter();
        let verdicts: Vec<Verdict> = verdicts
            .into_iter()
            .map(|v| v.unwrap_or_else(|| settled.next().expect("one verdict per screened post")))
            .collect();
        if shared.trace.on() {
            let verified = starling_net::mono_ns();
            for (a, v) in batch.iter().zip(&verdicts) {
                if let Verdict::Fresh(p) = v {
                    shared
                        .trace
                        .stamp(p.author, p.seq, Stage::Received, a.received_ns);
                    shared
                        .trace
                        .stamp(p.author, p.seq, Stage::Verified, verified);
                }
            }
        }

        let mut to_ban = Vec::new();
        let mut fresh: Vec<Post> = Vec::new();
        let mut proofs = Vec::new();
        // Ordered, so gaps are reported in the same order every time.
        let mut shown_by: BTreeMap<AuthorId, PeerId> = BTreeMap::new();
        for (a, v) in batch.iter().zip(&verdicts) {
            match v {
                Verdict::Refused(why) => {
                    if let Refusal::Post(PostError::Equivocation { author, seq }) = why {
                        let id = PostRef {
                            author: *author,
                            seq: *seq,
                        };
                        // The version we saw first: held, or earlier in this batch.
                        let first = held.get(&id).cloned().or_else(|| {
                            fresh
                                .iter()
                                .find(|p| p.id() == id)
                                .map(|p| p.as_bytes().to_vec())
                        });
                        if let Some(first) = first {
                            proofs.push((id, first, a.bytes.clone()));
                        }
                    }
                    // Time is screened before signatures: a future-dated post is
                    // checked now, so a forgery is struck as one, and a genuine post
                    // (a clock ahead: no strike) is sent back to its author.
                    let forged;
                    let why = match why {
                        Refusal::Post(PostError::FromFuture { .. }) => {
                            match Post::decode(&a.bytes).map(|p| (p.verify(), p.author)) {
                                Ok((Ok(()), author)) if author == a.channel.author() => {
                                    shared.skew.early(author, &a.bytes);
                                    why
                                }
                                Ok((Err(e), _)) => {
                                    forged = Refusal::Post(PostError::Signature(e));
                                    &forged
                                }
                                _ => why,
                            }
                        }
                        _ => why,
                    };
                    let author = Some(a.channel.author());
                    to_ban.extend(shared.metrics.refused(why, Some(a.from), author));
                }
                Verdict::Duplicate(_) => shared.metrics.inc("received.duplicate"),
                Verdict::Fresh(p) => {
                    shown_by.insert(p.author, a.from);
                    fresh.push(p.clone());
                }
            }
        }
        Checked {
            verdicts,
            fresh,
            proofs,
            shown_by,
            to_ban,
            now,
            transport,
        }
    }

    /// Queues fresh posts of others for the store (marking them pending until
    /// [`Intake::stored`]). `None`: nothing to store, or the store is closed.
    async fn queue(&self, shared: &Shared, posts: &[Post]) -> Option<Queued<Stored>> {
        if posts.is_empty() {
            return None;
        }
        let now = shared.clock.now_ms();
        for p in posts {
            // A received stamp moves our clock on only when it is barely ahead: a
            // clock pulled far ahead would stamp our posts ahead of everyone's.
            let _ = shared.clock.observe(p.ts, OBSERVE_AHEAD_MS);
        }
        {
            let mut pending = self.pending.lock().expect("pending poisoned");
            for p in posts {
                pending.insert(p.id(), p.as_bytes().to_vec());
            }
        }
        match shared.store.queue_received(posts.to_vec(), now).await {
            Ok(q) => Some(q),
            Err(e) => {
                tracing::error!(error = %e, "cannot store received posts");
                self.unmark(posts);
                None
            }
        }
    }

    /// Waits for queued posts' commit; announces the new ones. Returns how many were
    /// new, and the feed positions of their authors.
    async fn stored(
        &self,
        shared: &Shared,
        posts: Vec<Post>,
        queued: Option<Queued<Stored>>,
        transport: Transport,
    ) -> (usize, Vec<(AuthorId, u64, u64)>) {
        let Some(queued) = queued else {
            return (0, Vec::new());
        };
        let (outcome, positions) = match queued.done().await {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, "cannot store received posts");
                self.unmark(&posts);
                return (0, Vec::new());
            }
        };
        let now = shared.clock.now_ms();
        {
            let mut max = self.feed_max.lock().expect("feed_max poisoned");
            for (author, _, m) in &positions {
                max.insert(*author, *m);
            }
        }
        // After the newest seqs: a check from now on reads these posts from the store.
        self.unmark(&posts);
        let mut new = 0;
        let stored_ns = if shared.trace.on() {
            starling_net::mono_ns()
        } else {
            0
        };
        for (post, result) in posts.iter().zip(outcome) {
            match result {
                Inserted::New => {
                    new += 1;
                    shared.announce_post(post);
                    if stored_ns != 0 {
                        let t = &shared.trace;
                        t.stamp(post.author, post.seq, Stage::Stored, stored_ns);
                        t.stamp(post.author, post.seq, Stage::Event, starling_net::mono_ns());
                    }
                }
                Inserted::Duplicate => shared.metrics.inc("received.duplicate"),
                // Two batches raced with two versions of one post: the store kept
                // the first; the second is the same refusal the checks give.
                Inserted::Conflict(held) => {
                    let why = Refusal::Post(PostError::Equivocation {
                        author: post.author,
                        seq: post.seq,
                    });
                    shared.metrics.refused(&why, None, Some(post.author));
                    let (first, second) = (held.as_bytes().to_vec(), post.as_bytes().to_vec());
                    flag(shared, post.id(), first, second, now).await;
                }
            }
        }
        shared.metrics.add(transport.accepted(), new as u64);
        (new, positions)
    }

    /// Posts no longer pending: stored, or given up.
    fn unmark(&self, posts: &[Post]) {
        let mut pending = self.pending.lock().expect("pending poisoned");
        for p in posts {
            pending.remove(&p.id());
        }
    }

    /// Forgets what is known of an author (after an unfollow deleted their posts).
    pub(crate) fn forget(&self, author: &AuthorId) {
        self.feed_max
            .lock()
            .expect("feed_max poisoned")
            .remove(author);
    }
}

/// How far ahead of our clock a received timestamp may be and still move it on.
const OBSERVE_AHEAD_MS: u64 = 1_000;

/// Keeps the proof that an author signed two versions of one seq; the author is
/// flagged in `status` from then on.
async fn flag(shared: &Shared, id: PostRef, first: Vec<u8>, second: Vec<u8>, now: u64) {
    match shared
        .store
        .record_equivocation(id.author, id.seq, first, second, now)
        .await
    {
        Ok(true) => {
            tracing::warn!(author = %id.author, seq = id.seq, "equivocation: the author signed two posts with one seq; flagged");
        }
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "cannot keep an equivocation proof"),
    }
}

/// What carried a batch, for the counters.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Transport {
    Gossip,
    Sync,
}

impl Transport {
    fn received(self) -> &'static str {
        match self {
            Transport::Gossip => "gossip.received",
            Transport::Sync => "sync.received",
        }
    }
    fn accepted(self) -> &'static str {
        match self {
            Transport::Gossip => "gossip.accepted",
            Transport::Sync => "sync.accepted",
        }
    }
}
