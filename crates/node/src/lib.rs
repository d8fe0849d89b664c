//! A Starling peer: it owns the profile, the store and the clock, and offers the
//! operations the interfaces (HTTP API, shell, web UI) call.
//!
//! Layout:
//! - [`profile`]: the data directory of one user (key, token, database).
//! - [`clock`] and [`sntp`]: system clock + SNTP offset + HLC.
//! - [`node`]: [`Node`], posting, reposting, timeline, archive, status, and the
//!   background tasks (GC, SNTP) it runs until shut down.
//! - `gossip`: validating and storing pushed posts (batched verification).
//! - `sync`: serving `/starling/sync/1` and catching up (author first, then providers).
//! - `social`: handles (claims, TOFU pins), follow / unfollow, the outbox, followers.
//! - `network`: dispatching network events; periodic maintenance.
//! - [`metrics`]: counters of what was accepted, ignored and rejected.
//! - [`view`]: the serialisable shapes the interfaces show.

pub mod clock;
mod gossip;
pub mod metrics;
mod network;
pub mod node;
pub mod profile;
pub mod sntp;
mod social;
mod sync;
pub mod sysmem;
pub mod view;

pub use node::{Node, NodeConfig, NodeError, NodeEvent};
pub use profile::{Endpoint, Profile, ProfileDir, ProfileError};
pub use starling_core::{AuthorId, PostError};
pub use starling_net::{Multiaddr, NetConfig};
pub use starling_store::Cursor;
pub use view::{FollowView, HandleState, NetworkStatus, PostView, Status, TimelinePage, WhoAmI};
