//! Integration tests of the domain crate: wire-format test vectors (read from
//! `docs/wire-format.md`), encoding round-trips, and every validation error.

mod validation;
mod vectors;
