//! The recovery key: 256 random bits a person writes down once.
//!
//! Written form: the 32 key bytes followed by a 3-byte checksum (the first
//! three bytes of SHA-256("securevault/v1/recovery-checksum" || key)), encoded
//! in Crockford base32 (56 symbols, no padding) and grouped in fours with
//! dashes. Parsing ignores case, white space and dashes and reads O as 0 and I/L as
//! 1, so a person can type it back; a typo fails the checksum instead of
//! producing a wrong key. The recovery key wraps the vault key through
//! `HKDF-SHA256(recovery key, info "securevault/v1/recovery-wrap-key")`.

use std::fmt;

use data_encoding::{Encoding, Specification};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{CryptoError, Key32};

const CHECKSUM_LEN: usize = 3;
const CHECKSUM_LABEL: &[u8] = b"securevault/v1/recovery-checksum";
const WRAP_INFO: &[u8] = b"securevault/v1/recovery-wrap-key";
/// Symbols in the written form, without dashes.
pub const RECOVERY_SYMBOLS: usize = 56;

/// The account recovery key.
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryKey(Key32);

impl fmt::Debug for RecoveryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryKey(<redacted>)")
    }
}

fn crockford() -> Result<Encoding, CryptoError> {
    let mut spec = Specification::new();
    spec.symbols.push_str("0123456789ABCDEFGHJKMNPQRSTVWXYZ");
    spec.translate.from.push_str("abcdefghjkmnpqrstvwxyzOoIiLl");
    spec.translate.to.push_str("ABCDEFGHJKMNPQRSTVWXYZ001111");
    spec.ignore.push_str("- ");
    spec.encoding()
        .map_err(|_| CryptoError::RecoveryKey("internal encoding error"))
}

fn checksum(key: &[u8; 32]) -> [u8; CHECKSUM_LEN] {
    let digest = Sha256::new()
        .chain_update(CHECKSUM_LABEL)
        .chain_update(key)
        .finalize();
    let mut out = [0u8; CHECKSUM_LEN];
    out.copy_from_slice(digest.get(..CHECKSUM_LEN).unwrap_or(&[0; CHECKSUM_LEN]));
    out
}

impl RecoveryKey {
    /// A fresh recovery key.
    pub fn generate() -> Result<Self, CryptoError> {
        Ok(Self(Key32::random()?))
    }

    /// Wraps raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Key32::from_bytes(bytes))
    }

    /// The written form: 14 dash-separated groups of 4 symbols.
    pub fn to_display_string(&self) -> Result<Zeroizing<String>, CryptoError> {
        let mut raw = Zeroizing::new(Vec::with_capacity(32 + CHECKSUM_LEN));
        raw.extend_from_slice(self.0.expose());
        raw.extend_from_slice(&checksum(self.0.expose()));
        let symbols = Zeroizing::new(crockford()?.encode(&raw));
        let mut out = Zeroizing::new(String::with_capacity(RECOVERY_SYMBOLS + 13));
        for (i, c) in symbols.chars().enumerate() {
            if i > 0 && i % 4 == 0 {
                out.push('-');
            }
            out.push(c);
        }
        Ok(out)
    }

    /// Parses the written form.
    pub fn parse(text: &str) -> Result<Self, CryptoError> {
        let compact: Zeroizing<String> = Zeroizing::new(
            text.chars()
                .filter(|c| *c != '-' && !c.is_whitespace())
                .collect(),
        );
        if compact.len() != RECOVERY_SYMBOLS {
            return Err(CryptoError::RecoveryKey("expected 56 symbols"));
        }
        let raw = Zeroizing::new(
            crockford()?
                .decode(compact.as_bytes())
                .map_err(|_| CryptoError::RecoveryKey("a symbol is not valid"))?,
        );
        let (key, sum) = raw
            .split_at_checked(32)
            .ok_or(CryptoError::RecoveryKey("too short"))?;
        let key: [u8; 32] = key
            .try_into()
            .map_err(|_| CryptoError::RecoveryKey("too short"))?;
        let key = Self::from_bytes(key);
        if !bool::from(checksum(key.0.expose()).ct_eq(sum)) {
            return Err(CryptoError::RecoveryKey("checksum mismatch (a typo?)"));
        }
        Ok(key)
    }

    pub(crate) fn wrapping_key(&self) -> Result<Key32, CryptoError> {
        self.0.derive(WRAP_INFO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_grouped_and_parses_back() {
        let rk = RecoveryKey::generate().unwrap();
        let s = rk.to_display_string().unwrap();
        assert_eq!(s.len(), 56 + 13);
        assert!(s.split('-').all(|g| g.len() == 4));
        assert_eq!(RecoveryKey::parse(&s).unwrap(), rk);
    }

    #[test]
    fn parsing_forgives_case_spaces_and_look_alikes() {
        let rk = RecoveryKey::from_bytes([0; 32]);
        let s = rk.to_display_string().unwrap();
        let sloppy = s.to_lowercase().replace('-', " ").replace('0', "o") + "\n";
        assert_eq!(RecoveryKey::parse(&sloppy).unwrap(), rk);
    }

    #[test]
    fn typos_and_bad_lengths_are_rejected() {
        let rk = RecoveryKey::from_bytes([5; 32]);
        let s = rk.to_display_string().unwrap().replace('-', "");
        // Change one symbol anywhere: the checksum catches it.
        for i in 0..RECOVERY_SYMBOLS {
            let mut chars: Vec<char> = s.chars().collect();
            chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
            let typo: String = chars.into_iter().collect();
            assert!(RecoveryKey::parse(&typo).is_err(), "typo at {i} accepted");
        }
        assert!(RecoveryKey::parse(&s[..55]).is_err());
        assert!(RecoveryKey::parse(&format!("{s}0")).is_err());
        assert!(RecoveryKey::parse(&s.replacen(&s[..1], "U", 1)).is_err());
    }
}
