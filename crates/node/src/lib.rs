//! A Starling peer: it owns the profile, the store and the clock, and offers the
//! operations the interfaces (HTTP API, shell, web UI) call.
//!
//! Layout:
//! - [`profile`]: the data directory of one user (key, token, database).
//! - [`clock`] and [`sntp`]: system clock + SNTP offset + HLC.
//! - [`node`]: [`Node`], posting, reposting, timeline, archive, status, and the
//!   background tasks (GC, SNTP) it runs until shut down.
//! - [`view`]: the serialisable shapes the interfaces show.

pub mod clock;
pub mod node;
pub mod profile;
pub mod sntp;
pub mod view;

pub use node::{Node, NodeConfig, NodeError, NodeEvent};
pub use profile::{Profile, ProfileError};
pub use view::{PostView, Status, TimelinePage, WhoAmI};
