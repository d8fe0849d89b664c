//! The key as 24 words (BIP39, English list): its 32-byte seed is the phrase's
//! 256 bits of entropy, and the last word carries a checksum, so a wrong or swapped
//! word is caught instead of restoring some other key.

use bip39::{Language, Mnemonic};
use thiserror::Error;
use zeroize::Zeroizing;

/// Words in a phrase: 256 bits of seed and 8 of checksum, 11 bits a word.
pub const WORDS: usize = 24;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PhraseError {
    #[error("a key phrase has {WORDS} words; this has {0}")]
    WordCount(usize),
    #[error("word {position} ({word:?}) is not in the BIP39 English word list")]
    UnknownWord { position: usize, word: String },
    #[error(
        "the words do not check out (their checksum): one is wrong, or two are swapped; nothing was restored"
    )]
    Checksum,
    #[error("not a key phrase: {0}")]
    Other(String),
}

/// The phrase of a seed.
pub fn words(seed: &[u8; 32]) -> Vec<&'static str> {
    Mnemonic::from_entropy_in(Language::English, seed)
        .expect("32 bytes are valid BIP39 entropy")
        .words()
        .collect()
}

/// The seed of a phrase. Words are separated by any white space, in any case;
/// numbers before them (`1.`, `2)`, as a written-down list has them) are skipped.
pub fn seed(text: &str) -> Result<Zeroizing<[u8; 32]>, PhraseError> {
    let words: Vec<String> = text
        .split_whitespace()
        .filter(|t| {
            !t.trim_end_matches(['.', ')', ':'])
                .chars()
                .all(|c| c.is_ascii_digit())
        })
        .map(str::to_lowercase)
        .collect();
    if words.len() != WORDS {
        return Err(PhraseError::WordCount(words.len()));
    }
    let joined = Zeroizing::new(words.join(" "));
    let mnemonic =
        Mnemonic::parse_in_normalized(Language::English, &joined).map_err(|e| match e {
            bip39::Error::UnknownWord(i) => PhraseError::UnknownWord {
                position: i + 1,
                word: words[i].chars().take(40).collect(),
            },
            bip39::Error::BadWordCount(n) => PhraseError::WordCount(n),
            bip39::Error::InvalidChecksum => PhraseError::Checksum,
            other => PhraseError::Other(other.to_string()),
        })?;
    let (entropy, len) = mnemonic.to_entropy_array();
    let entropy = Zeroizing::new(entropy);
    let mut seed = Zeroizing::new([0u8; 32]);
    seed.copy_from_slice(&entropy[..len]);
    Ok(seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_mistakes() {
        let seed = [42u8; 32];
        let w = words(&seed);
        assert_eq!(w.len(), WORDS);
        assert_eq!(*super::seed(&w.join(" ")).unwrap(), seed);
        // Numbered, upper case, over several lines.
        let listed: String = w
            .iter()
            .enumerate()
            .map(|(i, x)| format!("{}. {}\n", i + 1, x.to_uppercase()))
            .collect();
        assert_eq!(*super::seed(&listed).unwrap(), seed);

        let mut unknown = w.clone();
        unknown[4] = "starling";
        assert_eq!(
            super::seed(&unknown.join(" ")).unwrap_err(),
            PhraseError::UnknownWord {
                position: 5,
                word: "starling".into()
            }
        );
        // A valid word in the wrong place breaks the checksum.
        let mut wrong = w.clone();
        wrong[0] = if w[0] == "zoo" { "abandon" } else { "zoo" };
        assert_eq!(
            super::seed(&wrong.join(" ")).unwrap_err(),
            PhraseError::Checksum
        );
        assert_eq!(
            super::seed(&w[..12].join(" ")).unwrap_err(),
            PhraseError::WordCount(12)
        );
    }

    #[test]
    fn known_vector() {
        // BIP39's own test vector for 32 bytes of 0x00.
        let w = words(&[0u8; 32]);
        assert_eq!(w[..23], ["abandon"; 23]);
        assert_eq!(w[23], "art");
    }
}
