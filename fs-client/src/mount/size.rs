//! Byte sizes on the command line (`--cache-size 2G`, `--memory-cache
//! 64MiB`) and in `vault status`.
//!
//! A size is a number, optionally with a fraction (`1.5G`), and an optional
//! unit. `K`, `M`, `G`, `T` and `KiB`, `MiB`, `GiB`, `TiB` are powers of
//! 1024; `KB`, `MB`, `GB`, `TB` are powers of 1000; `B` or no unit means
//! bytes. Units are case-insensitive. The result is exact integer
//! arithmetic (no floating point), rounded down to whole bytes, and refused
//! when it does not fit in a `u64`.

/// Parses a size such as `512M`, `2G`, `1GiB` or `1048576`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit = unit.trim();
    let multiplier = unit_multiplier(unit).ok_or_else(|| {
        format!("unknown unit {unit:?} (use K, M, G, T, KiB, MiB, GiB, TiB, KB, MB, GB or TB)")
    })?;
    let (whole, fraction) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    if whole.is_empty() && fraction.is_empty() {
        return Err(format!("{text:?} is not a size (e.g. 512M, 2G, 1GiB)"));
    }
    let too_big = || format!("{text} is too large");
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| too_big())?
    };
    let mut bytes = whole.checked_mul(multiplier).ok_or_else(too_big)?;
    if !fraction.is_empty() {
        if fraction.len() > 9 {
            return Err(format!("{text}: at most 9 digits after the point"));
        }
        let digits: u64 = fraction
            .parse()
            .map_err(|_| format!("{text:?} is not a size"))?;
        let scale = 10u64.pow(u32::try_from(fraction.len()).map_err(|_| too_big())?);
        // digits < scale <= 1e9 and multiplier <= 2^40, so this fits in u128.
        let part = u128::from(digits) * u128::from(multiplier) / u128::from(scale);
        let part = u64::try_from(part).map_err(|_| too_big())?;
        bytes = bytes.checked_add(part).ok_or_else(too_big)?;
    }
    Ok(bytes)
}

fn unit_multiplier(unit: &str) -> Option<u64> {
    const KI: u64 = 1024;
    let lower = unit.to_ascii_lowercase();
    Some(match lower.as_str() {
        "" | "b" => 1,
        "k" | "kib" => KI,
        "m" | "mib" => KI.pow(2),
        "g" | "gib" => KI.pow(3),
        "t" | "tib" => KI.pow(4),
        "kb" => 1000,
        "mb" => 1000u64.pow(2),
        "gb" => 1000u64.pow(3),
        "tb" => 1000u64.pow(4),
        _ => return None,
    })
}

/// A size for people: `512 B`, `1.5 KiB`, `64.0 MiB`, `2.0 GiB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    // Tenths of the unit, computed in integers.
    let mut unit = 0usize;
    let mut scaled = u128::from(bytes) * 10 / 1024;
    while scaled >= 10 * 1024 && unit + 1 < UNITS.len() {
        scaled /= 1024;
        unit += 1;
    }
    let name = UNITS.get(unit).copied().unwrap_or("PiB");
    format!("{}.{} {name}", scaled / 10, scaled % 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("512m").unwrap(), 512 << 20);
        assert_eq!(parse_size("2G").unwrap(), 2 << 30);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("64 MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("1T").unwrap(), 1 << 40);
        assert_eq!(parse_size("10KB").unwrap(), 10_000);
        assert_eq!(parse_size("3GB").unwrap(), 3_000_000_000);
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size(".5K").unwrap(), 512);
        assert_eq!(parse_size("0").unwrap(), 0);
        assert_eq!(parse_size("100B").unwrap(), 100);
    }

    #[test]
    fn bad_sizes_are_refused() {
        for bad in [
            "",
            "G",
            "abc",
            "1X",
            "1.2.3G",
            "-1G",
            "99999999999999999999",
            "16777216T",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse_size("1.0000000001G").is_err());
    }

    #[test]
    fn sizes_format_for_people() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(64 << 20), "64.0 MiB");
        assert_eq!(format_bytes(1 << 30), "1.0 GiB");
        assert_eq!(format_bytes(u64::MAX), "16383.9 PiB");
    }
}
