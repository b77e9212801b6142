//! Who may call the gateway: the client's key from `Authorization: Bearer <key>`, checked
//! against SHA-256 digests of the accepted keys without a timing difference that would tell an
//! attacker how close a guess came.

use sha2::{Digest as _, Sha256};

/// A SHA-256 digest.
pub type Digest = [u8; 32];

/// The SHA-256 digest of a key.
#[must_use]
pub fn digest(key: &str) -> Digest {
    Sha256::digest(key.as_bytes()).into()
}

/// The key in an `Authorization` header: scheme `Bearer` (any case), then the key.
#[must_use]
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let (scheme, key) = header?.trim().split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty()).then_some(key)
}

/// The keys in the `GATEWAY_API_KEYS` secret: separated by commas, spaces or new lines.
#[must_use]
pub fn configured_keys(secret: &str) -> Vec<&str> {
    secret.split([',', ' ', '\n', '\r', '\t']).filter(|key| !key.is_empty()).collect()
}

/// Equality that looks at every byte whatever it finds.
#[must_use]
pub fn constant_time_eq(left: &Digest, right: &Digest) -> bool {
    let difference = left.iter().zip(right).fold(0u8, |acc, (a, b)| acc | (a ^ b));
    difference == 0
}

/// Whether `presented` is among `accepted`, comparing against every entry so that the time
/// taken does not depend on which one matched.
#[must_use]
pub fn is_accepted(presented: &Digest, accepted: &[Digest]) -> bool {
    accepted.iter().fold(false, |found, digest| constant_time_eq(presented, digest) | found)
}

/// A digest as lower-case hex, the form KV keys of accepted keys take.
#[must_use]
pub fn to_hex(digest: &Digest) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
        hex.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_keys_are_read() {
        let cases = [
            (Some("Bearer sk-abc"), Some("sk-abc")),
            (Some("bearer  sk-abc "), Some("sk-abc")),
            (Some("BEARER sk-abc"), Some("sk-abc")),
            (Some("Basic dXNlcjpwYXNz"), None),
            (Some("Bearer"), None),
            (Some("Bearer "), None),
            (Some("sk-abc"), None),
            (None, None),
        ];
        for (header, key) in cases {
            assert_eq!(bearer(header), key, "{header:?}");
        }
    }

    #[test]
    fn configured_keys_split_on_any_separator() {
        assert_eq!(configured_keys("a, b\nc\r\n d,,"), vec!["a", "b", "c", "d"]);
        assert!(configured_keys(" , \n").is_empty());
    }

    #[test]
    fn digests_compare_whole() {
        let zero = [0u8; 32];
        let mut last = zero;
        last[31] = 1;
        let mut first = zero;
        first[0] = 0x80;
        assert!(constant_time_eq(&zero, &zero));
        assert!(!constant_time_eq(&zero, &last));
        assert!(!constant_time_eq(&zero, &first));
        assert!(is_accepted(&last, &[zero, first, last]));
        assert!(!is_accepted(&last, &[zero, first]));
        assert!(!is_accepted(&last, &[]));
    }

    #[test]
    fn digests_are_sha256() {
        let expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(to_hex(&digest("abc")), expected);
    }

    #[test]
    fn hex_is_lower_case_and_full_length() {
        let mut digest = [0u8; 32];
        digest[0] = 0xab;
        digest[31] = 0x0f;
        let hex = to_hex(&digest);
        assert_eq!(hex.len(), 64);
        assert!(hex.starts_with("ab00") && hex.ends_with("000f"));
    }
}
