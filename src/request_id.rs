//! The `X-Request-ID` of a request: the client's when it is sane, a fresh random one otherwise.
//! The same id goes upstream, so Zaguan can match retries, and back on every response.

use std::fmt::Write as _;

/// The longest client id the gateway keeps.
pub const MAX_LEN: usize = 128;

/// The client's id when it is 1 to 128 bytes of printable ASCII (space included, not at the
/// ends, where header parsing would trim it).
#[must_use]
pub fn accept(header: Option<&str>) -> Option<&str> {
    let id = header?;
    let printable = id.bytes().all(|b| (0x20..0x7f).contains(&b));
    let trimmed = !id.starts_with(' ') && !id.ends_with(' ');
    (!id.is_empty() && id.len() <= MAX_LEN && printable && trimmed).then_some(id)
}

/// A random version 4 UUID from the platform's random source. Should the source fail, a
/// fixed-format id still comes back, unique within the isolate, rather than a panic.
#[must_use]
pub fn generate() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        bytes[8..].copy_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = bytes.iter().fold(String::with_capacity(32), |mut hex, byte| {
        let _ = write!(hex, "{byte:02x}");
        hex
    });
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

/// The id to use for a request with this header.
#[must_use]
pub fn for_request(header: Option<&str>) -> String {
    accept(header).map_or_else(generate, str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sane_ids_are_kept_and_others_replaced() {
        let long = "a".repeat(MAX_LEN);
        let too_long = "a".repeat(MAX_LEN + 1);
        let cases = [
            (Some("req-123"), true),
            (Some("with space inside"), true),
            (Some(long.as_str()), true),
            (Some(too_long.as_str()), false),
            (Some(""), false),
            (Some(" lead"), false),
            (Some("a\u{7}b"), false),
            (Some("a\r\nb"), false),
            (Some("tab\there"), false),
            (Some("caf\u{e9}"), false),
            (Some("\u{7f}"), false),
            (None, false),
        ];
        for (header, kept) in cases {
            assert_eq!(accept(header).is_some(), kept, "{header:?}");
            assert_eq!(for_request(header) == header.unwrap_or_default(), kept, "{header:?}");
        }
    }

    #[test]
    fn generated_ids_are_version_4_uuids_and_differ() {
        let first = generate();
        let second = generate();
        assert_ne!(first, second);
        assert_eq!(first.len(), 36);
        assert_eq!(&first[14..15], "4");
        assert!("89ab".contains(&first[19..20]));
        assert!(accept(Some(&first)).is_some());
    }
}
