//! A Starling peer: it owns the profile, the store and the clock, and offers the
//! operations the interfaces (HTTP API, shell, web UI) call.
//!
//! Layout:
//! - [`profile`]: the data directory of one user (key, token, database).
//! - [`clock`] and [`sntp`]: system clock + SNTP offset + HLC.
//! - [`node`]: [`Node`]: what a node is made of (`Shared`: identity, settings,
//!   store, clock, counters, tasks, live events, own head, names, follows), start
//!   and shutdown, and the local operations (post, repost, timeline, archive,
//!   status, GC).
//! - `online`: the node with a network (`Online`): owns the `Net` handle and the
//!   networked subsystems, dispatches network events, runs maintenance.
//! - `intake`: the one way received posts enter (core's checks, one read for held
//!   posts, counting, storing, announcing, gaps).
//! - `catchup`: serving `/starling/sync/1` and catching up (author first, then
//!   providers).
//! - `follows`: whom we follow, follow / unfollow, the outbox, followers.
//! - `handles`: our handle's claim, resolving handles (TOFU pins), the profile
//!   record.
//! - `tasks`: the background task set (cancelled together, reaped as they end,
//!   bounded).
//! - `gate`: admission of inbound requests per peer (a token bucket, a few at once).
//! - [`metrics`]: counters of what was accepted, ignored and rejected; strikes.
//! - [`trace`]: stamps of each stage a post passes (for the latency breakdown).
//! - [`view`]: the serialisable shapes the interfaces show.

mod catchup;
pub mod clock;
mod follows;
mod gate;
mod handles;
mod intake;
pub mod metrics;
pub mod node;
mod online;
pub mod profile;
mod skew;
pub mod sntp;
pub mod sysmem;
mod tasks;
pub mod trace;
pub mod view;

pub use follows::MAX_FOLLOW_BATCH;
pub use node::{Node, NodeConfig, NodeError, NodeEvent};
pub use profile::{Endpoint, Profile, ProfileDir, ProfileError};
pub use skew::FutureRefusals;
pub use starling_core::{AuthorId, PostError};
pub use starling_net::{Multiaddr, Net, NetConfig, NetEvent, RelayLimits, multiaddr};
pub use starling_store::{Cursor, Quota};
pub use view::{
    FlaggedAuthor, FollowView, HandleState, NetworkStatus, PostView, Status, StoreStatus,
    TimelinePage, UserView, WhoAmI,
};
