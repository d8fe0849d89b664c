//! Handles: the human names users claim for their keys.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

pub const MIN_HANDLE_LEN: usize = 2;
pub const MAX_HANDLE_LEN: usize = 40;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HandleError {
    #[error("handle {handle:?} is too short: it needs 2 to 40 characters of a-z, 0-9 and _")]
    TooShort { handle: String },
    #[error("handle is {len} characters long: it needs 2 to 40 characters of a-z, 0-9 and _")]
    TooLong { len: usize },
    #[error("handle {handle:?} contains {ch:?}: only lowercase a-z, digits 0-9 and _ are allowed")]
    BadChar { handle: String, ch: char },
}

/// A validated handle: 2-40 characters of `a-z0-9_`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Handle(String);

impl Handle {
    pub fn parse(s: &str) -> Result<Self, HandleError> {
        let len = s.chars().count();
        if let Some(ch) = s
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
        {
            return Err(HandleError::BadChar {
                handle: s.chars().take(60).collect(),
                ch,
            });
        }
        if len < MIN_HANDLE_LEN {
            return Err(HandleError::TooShort {
                handle: s.to_string(),
            });
        }
        if len > MAX_HANDLE_LEN {
            return Err(HandleError::TooLong { len });
        }
        Ok(Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}", self.0)
    }
}

impl FromStr for Handle {
    type Err = HandleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Handle {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Handle {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_handles() {
        for h in [
            "al",
            "alice",
            "bob_42",
            "a_very_long_handle_of_exactly_forty_ch",
        ] {
            assert_eq!(Handle::parse(h).unwrap().as_str(), h);
        }
        assert!(Handle::parse(&"x".repeat(40)).is_ok());
    }

    #[test]
    fn rejects_invalid_handles_with_exact_errors() {
        assert!(matches!(
            Handle::parse("a"),
            Err(HandleError::TooShort { .. })
        ));
        assert!(matches!(
            Handle::parse(""),
            Err(HandleError::TooShort { .. })
        ));
        assert_eq!(
            Handle::parse(&"x".repeat(41)),
            Err(HandleError::TooLong { len: 41 })
        );
        assert!(matches!(
            Handle::parse("Alice"),
            Err(HandleError::BadChar { ch: 'A', .. })
        ));
        assert!(matches!(
            Handle::parse("al-ice"),
            Err(HandleError::BadChar { ch: '-', .. })
        ));
        assert!(matches!(
            Handle::parse("zoë"),
            Err(HandleError::BadChar { ch: 'ë', .. })
        ));
    }
}
