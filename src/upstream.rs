//! Judging what Zaguan sent back: which error bodies pass through as they are, which headers go
//! with them, and the non-streaming completion with its `model` rewritten.

use crate::error::GatewayError;
use crate::json::{Scanner, Shape};
use crate::usage::Usage;

/// Response headers of an upstream error that reach the client under their own names, so the
/// SDKs can honour the upstream's cool-down.
#[must_use]
pub fn is_passed_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name == "retry-after" || name == "retry-after-ms" || name.starts_with("x-ratelimit-")
}

/// Whether a body is an OpenAI error object: `{"error": {"message": "...", ...}}`.
#[must_use]
pub fn is_openai_error(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .is_ok_and(|value| value["error"]["message"].is_string())
}

/// What an upstream error answer becomes: the body as it came when it is OpenAI-shaped, or a
/// gateway error of our own (an HTML page, an empty body) under 502.
///
/// # Errors
/// [`GatewayError::UpstreamStatus`] when the body is not an OpenAI error.
pub fn error_body(status: u16, body: &[u8], secret: &str) -> Result<Vec<u8>, GatewayError> {
    if is_openai_error(body) {
        Ok(redact(body, secret))
    } else {
        Err(GatewayError::UpstreamStatus { status })
    }
}

/// A non-streaming completion with each top-level `model` string set to `replacement` (a JSON
/// string literal); every other byte stays. The completion's usage comes back beside it.
///
/// # Errors
/// [`GatewayError::UpstreamInvalid`] when the body is not a JSON object.
pub fn rewrite_completion(
    body: &[u8],
    replacement: &[u8],
) -> Result<(Vec<u8>, Option<Usage>), GatewayError> {
    let mut scanner = Scanner::default();
    if scanner.scan(body) != Shape::Object {
        return Err(GatewayError::UpstreamInvalid {
            reason: "the completion is not a JSON object".to_owned(),
        });
    }
    if scanner.choices.is_none() {
        return Err(GatewayError::UpstreamInvalid {
            reason: "the completion has no `choices`".to_owned(),
        });
    }
    let mut out = Vec::with_capacity(body.len() + replacement.len());
    let mut copied = 0;
    for span in &scanner.model_spans {
        out.extend_from_slice(&body[copied..span.start]);
        out.extend_from_slice(replacement);
        copied = span.end;
    }
    out.extend_from_slice(&body[copied..]);
    let usage = scanner.usage.and_then(|span| Usage::parse(&body[span]));
    Ok((out, usage))
}

/// `body` with every occurrence of `secret` replaced, should an upstream quote the key back:
/// first as raw bytes, then, should a JSON string still hold it once its escapes are decoded
/// (`\u002d`), by writing the JSON out again with that string redacted.
#[must_use]
pub fn redact(body: &[u8], secret: &str) -> Vec<u8> {
    let raw = replace_raw(body, secret);
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&raw) else {
        return raw;
    };
    if !secret.is_empty() && redact_strings(&mut value, secret) {
        value.to_string().into_bytes()
    } else {
        raw
    }
}

/// Replaces `secret` in every string of `value`; true when one held it.
fn redact_strings(value: &mut serde_json::Value, secret: &str) -> bool {
    match value {
        serde_json::Value::String(text) if text.contains(secret) => {
            *text = text.replace(secret, "[redacted]");
            true
        }
        serde_json::Value::Array(items) => {
            items.iter_mut().fold(false, |found, item| redact_strings(item, secret) | found)
        }
        serde_json::Value::Object(members) => {
            members.values_mut().fold(false, |found, item| redact_strings(item, secret) | found)
        }
        _ => false,
    }
}

fn replace_raw(body: &[u8], secret: &str) -> Vec<u8> {
    let secret = secret.as_bytes();
    if secret.len() < 8 {
        return body.to_vec();
    }
    let mut out = Vec::with_capacity(body.len());
    let mut rest = body;
    while let Some(at) = rest.windows(secret.len()).position(|window| window == secret) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(b"[redacted]");
        rest = &rest[at + secret.len()..];
    }
    out.extend_from_slice(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_errors_pass_and_other_bodies_become_502() {
        let openai = br#"{"error":{"message":"Incorrect API key provided.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
        assert_eq!(error_body(401, openai, "sk-secret-key"), Ok(openai.to_vec()));
        let html = b"<html><head><title>502 Bad Gateway</title></head></html>";
        let others: [&[u8]; 5] =
            [html, b"", b"{\"error\":\"text\"}", b"{\"message\":\"x\"}", b"null"];
        for body in others {
            let error = error_body(502, body, "sk-secret-key").err();
            assert_eq!(error.map(|e| e.status()), Some(502), "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn a_key_quoted_by_the_upstream_is_redacted() {
        let body = br#"{"error":{"message":"Incorrect API key provided: sk-secret-key and sk-secret-key."}}"#;
        let out = error_body(401, body, "sk-secret-key").unwrap_or_default();
        let text = String::from_utf8(out).unwrap_or_default();
        assert_eq!(
            text,
            r#"{"error":{"message":"Incorrect API key provided: [redacted] and [redacted]."}}"#
        );
    }

    #[test]
    fn a_key_written_with_escapes_is_redacted_too() {
        let body = br#"{"error":{"message":"bad key sk-secret-key","code":"invalid_api_key"}}"#;
        let text = String::from_utf8(redact(body, "sk-secret-key")).unwrap_or_default();
        assert!(!text.contains("secret") && text.contains("[redacted]"), "{text}");
        let clean = br#"{"error":{"message":"no key here"}}"#;
        assert_eq!(redact(clean, "sk-secret-key"), clean.to_vec(), "untouched bytes stay");
    }

    #[test]
    fn rate_limit_headers_are_recognised() {
        for name in
            ["retry-after", "Retry-After", "retry-after-ms", "x-ratelimit-remaining-requests"]
        {
            assert!(is_passed_header(name), "{name}");
        }
        for name in ["set-cookie", "content-length", "x-request-id", "server"] {
            assert!(!is_passed_header(name), "{name}");
        }
    }

    #[test]
    fn completions_change_only_in_top_level_model() {
        let body = br#"{"id":"x","model":"up","choices":[{"message":{"content":"\"model\":\"up\""}}],"usage":{"model":"up"},"big":1.50e+3}"#;
        let (out, usage) = rewrite_completion(body, b"\"zaguanai/socrates\"").unwrap_or_default();
        assert_eq!(usage, Some(Usage::default()), "a usage without counts reads as zeros");
        let expected = br#"{"id":"x","model":"zaguanai/socrates","choices":[{"message":{"content":"\"model\":\"up\""}}],"usage":{"model":"up"},"big":1.50e+3}"#;
        assert_eq!(out, expected.to_vec());
        let with_usage =
            br#"{"model":"m","choices":[],"usage":{"prompt_tokens":3,"total_tokens":5}}"#;
        let usage = rewrite_completion(with_usage, b"\"x\"").map(|(_, usage)| usage);
        let expected = Usage { prompt_tokens: 3, completion_tokens: 0, total_tokens: 5 };
        assert_eq!(usage, Ok(Some(expected)));
        assert!(rewrite_completion(b"<html>", b"\"x\"").is_err());
        assert!(rewrite_completion(br#"{"hello":"world"}"#, b"\"x\"").is_err());
        assert!(rewrite_completion(b"[1]", b"\"x\"").is_err());
    }
}
