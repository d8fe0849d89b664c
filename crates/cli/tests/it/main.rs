//! End-to-end tests of the real `starling` binary: real processes, real sockets on
//! 127.0.0.1, real SQLite files in temporary directories.

mod api_doc;
mod backup;
mod browser;
mod clock;
mod command_line;
mod deploy;
mod dht_flood;
mod disk;
mod faults;
mod feeds;
mod handles;
mod harness;
mod history;
mod ip_limits;
mod local;
mod mallory;
mod metrics;
mod nat;
mod netns;
mod p2p;
mod partition;
mod ports;
mod pytools;
mod secrets;
mod shell;
