//! The vars and secrets the Worker reads, with their defaults.

use worker::Env;

pub const DEFAULT_PREFIX: &str = "zaguanai/";
pub const DEFAULT_BASE_URL: &str = "https://api.zaguanai.com/v1";
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 60;

/// The deployment's settings for one request.
pub struct Config {
    /// `PERSONA_PREFIX`: what a persona's model id starts with.
    pub prefix: String,
    /// `ZAGUAN_BASE_URL`, without a trailing slash.
    pub base_url: String,
    /// `ZAGUAN_API_KEY`, a secret; absent means the gateway cannot call upstream.
    pub api_key: Option<String>,
    /// `UPSTREAM_TIMEOUT_SECONDS`: how long to wait for the upstream's response headers.
    pub timeout_seconds: u64,
}

impl Config {
    pub fn from_env(env: &Env) -> Self {
        let text = |name: &str| env.var(name).ok().map(|value| value.to_string());
        Self {
            prefix: text("PERSONA_PREFIX").unwrap_or_else(|| DEFAULT_PREFIX.to_owned()),
            base_url: text("ZAGUAN_BASE_URL")
                .filter(|url| !url.is_empty())
                .map_or_else(|| DEFAULT_BASE_URL.to_owned(), |url| url.trim_end_matches('/').to_owned()),
            api_key: text("ZAGUAN_API_KEY").filter(|key| !key.is_empty()),
            timeout_seconds: text("UPSTREAM_TIMEOUT_SECONDS")
                .and_then(|seconds| seconds.parse().ok())
                .filter(|&seconds| seconds > 0)
                .unwrap_or(DEFAULT_TIMEOUT_SECONDS),
        }
    }
}
