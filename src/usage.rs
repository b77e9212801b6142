//! Token usage as the upstream reports it, read from a completion or a stream's usage chunk.

use serde::Deserialize;

/// The token counts of one completion. A count the upstream left out or set to null is zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct Usage {
    #[serde(default, deserialize_with = "count")]
    pub prompt_tokens: u64,
    #[serde(default, deserialize_with = "count")]
    pub completion_tokens: u64,
    #[serde(default, deserialize_with = "count")]
    pub total_tokens: u64,
}

fn count<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    Ok(Option::<u64>::deserialize(deserializer)?.unwrap_or(0))
}

impl Usage {
    /// Reads a `usage` value; `None` for null or anything that is not a usage object.
    #[must_use]
    pub fn parse(text: &[u8]) -> Option<Self> {
        let object = text.trim_ascii_start().starts_with(b"{");
        object.then(|| serde_json::from_slice(text).ok()).flatten()
    }
}

/// Whether a `choices` value is an empty array, whatever the white space inside it.
#[must_use]
pub fn is_empty_array(text: &[u8]) -> bool {
    let inner = text.strip_prefix(b"[").and_then(|rest| rest.strip_suffix(b"]"));
    inner.is_some_and(|inner| inner.iter().all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_objects_are_read_and_other_values_are_not() {
        let usage = Usage::parse(br#"{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11,"prompt_tokens_details":null}"#);
        assert_eq!(usage, Some(Usage { prompt_tokens: 9, completion_tokens: 2, total_tokens: 11 }));
        let partial = Usage::parse(br#"{"prompt_tokens":9,"completion_tokens":null}"#);
        assert_eq!(partial, Some(Usage { prompt_tokens: 9, ..Usage::default() }));
        assert_eq!(Usage::parse(b"null"), None);
        assert_eq!(Usage::parse(b"[1]"), None);
        assert_eq!(Usage::parse(br#"{"prompt_tokens":-1}"#), None);
    }

    #[test]
    fn empty_arrays_are_recognised() {
        assert!(is_empty_array(b"[]"));
        assert!(is_empty_array(b"[ \n ]"));
        assert!(!is_empty_array(b"[{}]"));
        assert!(!is_empty_array(b"null"));
    }
}
