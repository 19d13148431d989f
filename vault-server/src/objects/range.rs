//! The `Range` request header of an object download: one range of bytes,
//! `bytes=A-B`, `bytes=A-` or `bytes=-N` (RFC 9110 §14.1.2). Multiple ranges
//! are not supported and answer 416, as does any header that does not parse:
//! a client that asks for a part must never silently get the whole object.

use std::ops::Range;

/// What a `Range` header asks of an object of `len` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// No `Range` header: the whole object (200).
    Whole,
    /// One satisfiable range, end exclusive (206).
    Part(Range<u64>),
    /// Not satisfiable, malformed or more than one range (416).
    Unsatisfiable,
}

/// Resolves the `Range` header `header` (if any) against an object of `len`
/// bytes.
pub fn resolve(header: Option<&str>, len: u64) -> Wanted {
    let Some(header) = header else {
        return Wanted::Whole;
    };
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return Wanted::Unsatisfiable;
    };
    let spec = spec.trim();
    if spec.contains(',') {
        return Wanted::Unsatisfiable;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return Wanted::Unsatisfiable;
    };
    let digits = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            None
        } else {
            s.parse().ok()
        }
    };
    let range = match (first.trim(), last.trim()) {
        // Suffix: the last N bytes.
        ("", n) => match digits(n) {
            Some(n) if n > 0 && len > 0 => len.saturating_sub(n)..len,
            _ => return Wanted::Unsatisfiable,
        },
        (a, "") => match digits(a) {
            Some(a) if a < len => a..len,
            _ => return Wanted::Unsatisfiable,
        },
        (a, b) => match (digits(a), digits(b)) {
            (Some(a), Some(b)) if a <= b && a < len => a..b.saturating_add(1).min(len),
            _ => return Wanted::Unsatisfiable,
        },
    };
    Wanted::Part(range)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let len = 100;
        assert_eq!(resolve(None, len), Wanted::Whole);
        assert_eq!(resolve(Some("bytes=0-0"), len), Wanted::Part(0..1));
        assert_eq!(resolve(Some("bytes=10-19"), len), Wanted::Part(10..20));
        assert_eq!(resolve(Some("bytes=90-200"), len), Wanted::Part(90..100));
        assert_eq!(resolve(Some("bytes=99-"), len), Wanted::Part(99..100));
        assert_eq!(resolve(Some("bytes=-10"), len), Wanted::Part(90..100));
        assert_eq!(resolve(Some("bytes=-1000"), len), Wanted::Part(0..100));
        assert_eq!(
            resolve(Some(&format!("bytes=0-{}", u64::MAX)), len),
            Wanted::Part(0..100)
        );
        for bad in [
            "bytes=100-",
            "bytes=100-200",
            "bytes=20-10",
            "bytes=-0",
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=",
            "bytes=-",
            "bytes=a-b",
            "bytes=+1-2",
            "bytes=1",
        ] {
            assert_eq!(resolve(Some(bad), len), Wanted::Unsatisfiable, "{bad}");
        }
        assert_eq!(resolve(Some("bytes=0-"), 0), Wanted::Unsatisfiable);
        assert_eq!(resolve(Some("bytes=-5"), 0), Wanted::Unsatisfiable);
    }
}
