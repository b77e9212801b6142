//! The vars and secrets the Worker reads, with their defaults. The README lists each one.

use std::time::Duration;

use worker::Env;

use crate::retry::Policy;
use crate::sse::DEFAULT_MAX_EVENT_BYTES;

/// How much the Worker logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Off,
    /// Failed requests only.
    Error,
    /// Failed requests and those that needed a retry.
    Warn,
    /// One line for every request.
    Info,
}

/// The deployment's settings for one request.
pub struct Config {
    /// `PERSONA_PREFIX`: what a persona's model id starts with.
    pub prefix: String,
    /// `ZAGUAN_BASE_URL`, without a trailing slash.
    pub base_url: String,
    /// `ZAGUAN_API_KEY`, a secret; absent means the gateway cannot call upstream.
    pub api_key: Option<String>,
    /// `UPSTREAM_FIRST_BYTE_TIMEOUT_MS`: the wait for the upstream's response headers.
    pub first_byte_timeout: Duration,
    /// `UPSTREAM_IDLE_TIMEOUT_MS`: the longest pause between two reads of a stream.
    pub idle_timeout: Duration,
    /// `RETRY_MAX_ATTEMPTS`, `RETRY_BASE_DELAY_MS`, `RETRY_MAX_DELAY_MS`, `RETRY_BUDGET_MS`.
    pub retry: Policy,
    /// `MAX_EVENT_BYTES`: the bound on one upstream event.
    pub max_event_bytes: usize,
    /// `PERSONA_CACHE_SECONDS`: how long an isolate keeps a persona it read (0: not at all).
    pub persona_cache: Duration,
    /// `LOG_LEVEL`: off, error, warn or info.
    pub log_level: LogLevel,
    /// The SHA-256 digests of the keys in the `GATEWAY_API_KEYS` secret.
    pub client_keys: Vec<crate::auth::Digest>,
    /// `ALLOW_ANONYMOUS=true`: serve clients that send no key.
    pub allow_anonymous: bool,
    /// `RATE_LIMIT_PERIOD_SECONDS`: the limiter's period, sent as `retry-after` on a 429.
    pub rate_limit_period: u64,
    /// `ALLOWED_ORIGINS`: browser origins allowed by CORS, comma-separated (none by default).
    pub allowed_origins: String,
    /// `MAX_BODY_BYTES`: the largest request body read.
    pub max_body_bytes: usize,
}

thread_local! {
    /// The settings, read once per isolate: vars and secrets do not change while it lives.
    static CURRENT: std::cell::RefCell<Option<std::rc::Rc<Config>>> =
        const { std::cell::RefCell::new(None) };
}

impl Config {
    /// The isolate's settings, read from `env` on first use.
    pub fn get(env: &Env) -> std::rc::Rc<Self> {
        CURRENT.with_borrow_mut(|current| {
            std::rc::Rc::clone(current.get_or_insert_with(|| std::rc::Rc::new(Self::from_env(env))))
        })
    }

    fn from_env(env: &Env) -> Self {
        let text = |name: &str| env.var(name).ok().map(|value| value.to_string());
        let number = |name: &str, default: u64| {
            text(name).and_then(|value| value.trim().parse::<u64>().ok()).unwrap_or(default)
        };
        let millis = |name: &str, default: u64| Duration::from_millis(number(name, default));
        let defaults = Policy::default();
        Self {
            prefix: text("PERSONA_PREFIX").unwrap_or_else(|| "zaguanai/".to_owned()),
            base_url: text("ZAGUAN_BASE_URL").filter(|url| !url.is_empty()).map_or_else(
                || "https://api.zaguanai.com/v1".to_owned(),
                |url| url.trim_end_matches('/').to_owned(),
            ),
            api_key: text("ZAGUAN_API_KEY").filter(|key| !key.is_empty()),
            first_byte_timeout: millis("UPSTREAM_FIRST_BYTE_TIMEOUT_MS", 60_000),
            idle_timeout: millis("UPSTREAM_IDLE_TIMEOUT_MS", 60_000),
            retry: Policy {
                max_attempts: u32::try_from(number("RETRY_MAX_ATTEMPTS", 3)).unwrap_or(3).max(1),
                base_delay: millis("RETRY_BASE_DELAY_MS", as_millis(defaults.base_delay)),
                max_delay: millis("RETRY_MAX_DELAY_MS", as_millis(defaults.max_delay)),
                budget: millis("RETRY_BUDGET_MS", as_millis(defaults.budget)),
            },
            max_event_bytes: usize::try_from(number(
                "MAX_EVENT_BYTES",
                DEFAULT_MAX_EVENT_BYTES as u64,
            ))
            .unwrap_or(DEFAULT_MAX_EVENT_BYTES),
            persona_cache: Duration::from_secs(number("PERSONA_CACHE_SECONDS", 60)),
            log_level: match text("LOG_LEVEL").as_deref().map(str::trim) {
                Some("off") => LogLevel::Off,
                Some("error") => LogLevel::Error,
                Some("warn") => LogLevel::Warn,
                _ => LogLevel::Info,
            },
            client_keys: crate::auth::configured_keys(
                &text("GATEWAY_API_KEYS").unwrap_or_default(),
            )
            .into_iter()
            .map(crate::auth::digest)
            .collect(),
            allow_anonymous: text("ALLOW_ANONYMOUS").is_some_and(|flag| flag.trim() == "true"),
            rate_limit_period: number("RATE_LIMIT_PERIOD_SECONDS", 60),
            allowed_origins: text("ALLOWED_ORIGINS").unwrap_or_default(),
            max_body_bytes: usize::try_from(number("MAX_BODY_BYTES", 1024 * 1024))
                .unwrap_or(1024 * 1024),
        }
    }
}

fn as_millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
