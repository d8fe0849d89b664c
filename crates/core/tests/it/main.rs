//! Integration tests of the domain crate: wire-format test vectors (read from
//! `docs/wire-format.md`), encoding round-trips, every validation error, and the
//! intake's verdicts.

mod intake;
mod validation;
mod vectors;
