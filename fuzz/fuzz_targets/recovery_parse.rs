//! `RecoveryKey::parse` on arbitrary text (what a person types).
//!
//! Properties: never panics; a key that parses prints as 14 dash-separated
//! groups of 4 symbols that parse back to the same key, and printing is
//! canonical (the same string for the same key). Independently, the first 32
//! input bytes as a key print and parse back, also lower-cased and without
//! dashes, and a one-symbol typo in the checksum symbols is rejected (one
//! elsewhere is rejected or, one time in 2^24, is another valid key).
#![no_main]

use common::crypto::recovery::{RECOVERY_SYMBOLS, RecoveryKey};
use libfuzzer_sys::fuzz_target;

fn display(key: &RecoveryKey) -> String {
    match key.to_display_string() {
        Ok(s) => s.as_str().to_owned(),
        Err(e) => panic!("to_display_string: {e:?}"),
    }
}

fn check_display(key: &RecoveryKey) -> String {
    let s = display(key);
    assert_eq!(
        s.len(),
        RECOVERY_SYMBOLS + RECOVERY_SYMBOLS / 4 - 1,
        "{s:?}"
    );
    assert!(s.split('-').all(|g| g.len() == 4), "{s:?}");
    assert_eq!(
        RecoveryKey::parse(&s).as_ref(),
        Ok(key),
        "{s:?} does not parse back"
    );
    assert_eq!(display(key), s, "display is not deterministic");
    s
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(key) = RecoveryKey::parse(text)
    {
        check_display(&key);
    }

    if let Some((bytes, rest)) = data.split_first_chunk::<32>() {
        let key = RecoveryKey::from_bytes(*bytes);
        let s = check_display(&key);
        let sloppy = s.to_lowercase().replace('-', "");
        assert_eq!(RecoveryKey::parse(&sloppy).as_ref(), Ok(&key), "{sloppy:?}");
        // A one-symbol typo (to another valid symbol). The 56 symbols carry
        // exactly 280 bits (32 key bytes, 3 checksum bytes), so a typo always
        // changes the decoded bytes. Symbols 52.. hold checksum bits only: a
        // typo there leaves the key and breaks the checksum, always. Elsewhere
        // a 24-bit checksum misses one typo in 2^24, so the property is that
        // an accepted typo is a different key that prints as the typo.
        let compact: Vec<char> = s.chars().filter(|&c| c != '-').collect();
        let at = usize::from(rest.first().copied().unwrap_or(0)) % compact.len();
        let symbols: Vec<char> = "0123456789ABCDEFGHJKMNPQRSTVWXYZ".chars().collect();
        let mut typo = compact.clone();
        let old = symbols.iter().position(|&c| c == typo[at]).unwrap_or(0);
        let step = 1 + usize::from(rest.get(1).copied().unwrap_or(0)) % (symbols.len() - 1);
        typo[at] = symbols[(old + step) % symbols.len()];
        let typo: String = typo.into_iter().collect();
        match RecoveryKey::parse(&typo) {
            Err(_) => {}
            Ok(other) => {
                assert!(at < 52, "typo {typo:?} in the checksum of {s:?} accepted");
                assert_ne!(other, key, "typo {typo:?} of {s:?} parses to the same key");
                assert_eq!(display(&other).replace('-', ""), typo);
            }
        }
    }
});
