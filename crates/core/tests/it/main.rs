//! Integration tests of the domain crate: wire-format test vectors (read from
//! `docs/wire-format.md`), encoding round-trips, every validation error, the
//! intake's verdicts, and one signature answer alone and in any batch.

mod intake;
mod signatures;
mod validation;
mod vectors;
