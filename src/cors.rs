//! Cross-origin access for browser clients: which origins may call, which request headers a
//! preflight may ask for (those the OpenAI SDKs send), and which response headers scripts see.

/// Request headers a browser may send: what the OpenAI and Vercel AI SDKs set, plus ours.
const ALLOWED_HEADERS: [&str; 8] = [
    "authorization",
    "content-type",
    "accept",
    "x-request-id",
    "openai-organization",
    "openai-project",
    "openai-beta",
    "x-api-key",
];

/// Response headers scripts may read.
pub const EXPOSED_HEADERS: &str = "x-request-id, retry-after, retry-after-ms, server-timing, \
     x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests, \
     x-ratelimit-limit-tokens, x-ratelimit-remaining-tokens, x-ratelimit-reset-tokens";

/// The methods the gateway serves.
pub const ALLOWED_METHODS: &str = "GET, HEAD, POST, OPTIONS";

/// How long a browser may cache a preflight answer, in seconds.
pub const MAX_AGE: &str = "86400";

/// The origin to allow for a request from `origin`, given `ALLOWED_ORIGINS` (a comma-separated
/// list; `*` allows any). `None`: no CORS headers at all.
#[must_use]
pub fn allowed_origin<'a>(allowed: &str, origin: Option<&'a str>) -> Option<&'a str> {
    let origin = origin?.trim();
    let listed = allowed.split(',').map(str::trim).any(|entry| entry == "*" || entry == origin);
    (listed && !origin.is_empty() && origin != "null").then_some(origin)
}

/// The headers a preflight may allow: the requested ones that are on the list, or named like
/// the OpenAI SDK's own `x-stainless-*` headers.
#[must_use]
pub fn allowed_request_headers(requested: Option<&str>) -> String {
    let Some(requested) = requested else {
        return ALLOWED_HEADERS.join(", ");
    };
    requested
        .split(',')
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| ALLOWED_HEADERS.contains(&name.as_str()) || name.starts_with("x-stainless-"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_origins_are_allowed() {
        let list = "https://app.example, https://other.example";
        assert_eq!(allowed_origin(list, Some("https://app.example")), Some("https://app.example"));
        assert_eq!(allowed_origin(list, Some("https://evil.example")), None);
        assert_eq!(allowed_origin(list, None), None);
        assert_eq!(allowed_origin("", Some("https://app.example")), None);
        assert_eq!(allowed_origin("*", Some("https://any.example")), Some("https://any.example"));
        assert_eq!(allowed_origin("*", Some("null")), None);
    }

    #[test]
    fn preflights_allow_the_sdk_headers_and_nothing_else() {
        let requested = "Authorization, Content-Type, X-Stainless-OS, x-stainless-retry-count, \
                         Cookie, X-Forwarded-For";
        assert_eq!(
            allowed_request_headers(Some(requested)),
            "authorization, content-type, x-stainless-os, x-stainless-retry-count"
        );
        assert!(allowed_request_headers(None).contains("authorization"));
    }
}
