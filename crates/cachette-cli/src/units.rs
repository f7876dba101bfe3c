//! The units the command line reads and writes: byte sizes (`4KiB`,
//! `64 B`), durations (`1500ms`, via humantime) and large counts (`1,234,567`).

use std::time::Duration;

const UNITS: [(&str, u64); 7] = [
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("GB", 1_000_000_000),
    ("MB", 1_000_000),
    ("KB", 1_000),
    ("B", 1),
];

/// Formats a byte count exactly: `4 KiB` for a whole number of KiB, MiB or
/// GiB, `1000 B` otherwise.
pub(crate) fn format_bytes(bytes: u64) -> String {
    UNITS
        .iter()
        .filter(|(unit, _)| unit.ends_with("iB"))
        .find(|(_, size)| bytes >= *size && bytes.is_multiple_of(*size))
        .map_or_else(
            || format!("{bytes} B"),
            |(unit, size)| format!("{} {unit}", bytes / size),
        )
}

/// Parses a byte size with the library's rules (`64`, `4KiB`, `1 MB`).
pub(crate) fn parse_byte_size(text: &str) -> Result<usize, String> {
    cachette::params::parse_byte_size(text)
        .ok_or_else(|| format!("`{text}` is not a byte size (expected e.g. `64`, `4KiB`, `1MB`)"))
        .and_then(|bytes| usize::try_from(bytes).map_err(|_| format!("`{text}` is too large")))
}

/// Parses a humantime duration (`1500ms`, `30s`, `2h 15m`) that is not zero.
/// A zero TTL has no meaning in cachette (`--persist` means "no expiry").
pub(crate) fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        Ok(_) => Err("the duration must be longer than zero".to_owned()),
        Err(err) => Err(err.to_string()),
    }
}

/// Formats a count with thousands separators: `1,234,567`.
pub(crate) fn thousands(count: u64) -> String {
    let digits = count.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_byte_size("64"), Ok(64));
        assert_eq!(parse_byte_size("4KiB"), Ok(4096));
        assert_eq!(parse_byte_size("4 kib"), Ok(4096));
        assert_eq!(parse_byte_size("1MB"), Ok(1_000_000));
        assert_eq!(parse_byte_size("0B"), Ok(0));
        assert!(parse_byte_size("4KX").is_err());
        assert!(parse_byte_size("KiB").is_err());
        assert!(parse_byte_size("-1").is_err());
    }

    #[test]
    fn byte_sizes_format_exactly() {
        assert_eq!(format_bytes(4096), "4 KiB");
        assert_eq!(format_bytes(1 << 20), "1 MiB");
        assert_eq!(format_bytes(1000), "1000 B");
        assert_eq!(format_bytes(0), "0 B");
    }

    #[test]
    fn durations_must_be_longer_than_zero() {
        assert_eq!(
            parse_positive_duration("1500ms"),
            Ok(Duration::from_millis(1500))
        );
        assert!(parse_positive_duration("0s").is_err());
        assert!(parse_positive_duration("1x").is_err());
    }

    #[test]
    fn counts_group_thousands() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
