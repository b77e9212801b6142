//! What each request leaves behind: one JSON log line when it really ends (for a stream, when
//! its last byte went out or the client left), a `Server-Timing` header, and a data point for
//! Workers Analytics Engine when the `METRICS` binding exists. Never a prompt, a completion, a
//! key or a header dump.

use std::fmt::Write as _;

use serde_json::{json, Value};
use worker::js_sys::Date;
use worker::{console_error, console_log, console_warn, AnalyticsEngineDataPointBuilder};
use worker::{AnalyticsEngineDataset, Env};

use super::config::LogLevel;
use crate::error::{GatewayError, Outcome};
use crate::usage::Usage;

const METRICS_BINDING: &str = "METRICS";

/// The longest stretch of a request path a log line repeats.
const MAX_LOGGED_PATH: usize = 256;

/// Everything noted about one request until it ends.
pub struct Trace {
    pub id: String,
    method: String,
    path: String,
    started: f64,
    level: LogLevel,
    metrics: Option<AnalyticsEngineDataset>,
    pub persona: Option<String>,
    pub upstream_model: Option<String>,
    pub stream: bool,
    pub attempts: u32,
    pub kv_ms: Option<f64>,
    pub upstream_first_byte_ms: Option<f64>,
    /// The wait for the upstream alone, retries included: what `Server-Timing` calls upstream.
    pub upstream_wait_ms: Option<f64>,
    pub client_first_byte_ms: Option<f64>,
    pub bytes_out: u64,
    pub usage: Option<Usage>,
    /// How the request ended, when the status alone would mislead (an upstream 429 passed on).
    pub outcome: Option<Outcome>,
    error: Option<(&'static str, String)>,
    /// Set once the line is written, so that it is written once.
    done: bool,
}

/// Milliseconds since the Unix epoch. Within a request it advances across I/O, which is what
/// the timings measure.
pub fn now() -> f64 {
    Date::now()
}

impl Trace {
    pub fn start(id: &str, method: &str, path: &str, level: LogLevel, env: &Env) -> Self {
        let metrics = env.analytics_engine(METRICS_BINDING).ok();
        Self::new(id, method, path, level, metrics)
    }

    fn new(
        id: &str,
        method: &str,
        path: &str,
        level: LogLevel,
        metrics: Option<AnalyticsEngineDataset>,
    ) -> Self {
        Self {
            id: id.to_owned(),
            method: method.to_owned(),
            path: path.chars().take(MAX_LOGGED_PATH).collect(),
            started: now(),
            level,
            metrics,
            persona: None,
            upstream_model: None,
            stream: false,
            attempts: 0,
            kv_ms: None,
            upstream_first_byte_ms: None,
            upstream_wait_ms: None,
            client_first_byte_ms: None,
            bytes_out: 0,
            usage: None,
            outcome: None,
            error: None,
            done: false,
        }
    }

    /// Milliseconds since the request arrived.
    pub fn elapsed(&self) -> f64 {
        now() - self.started
    }

    /// Notes a failure's class and a short reason: the runtime's own words for its failures,
    /// else the message the client got (which holds no key and no prompt).
    pub fn fail(&mut self, error: &GatewayError) {
        let reason = match error {
            GatewayError::Internal { reason } | GatewayError::UpstreamUnreachable { reason } => {
                reason.clone()
            }
            _ => error.message(),
        };
        self.error = Some((error.code(), reason.chars().take(200).collect()));
    }

    /// Notes a failure the gateway did not answer itself: a stream cut off or timed out, an
    /// upstream error passed on.
    pub fn note_failure(&mut self, code: &'static str, reason: &str) {
        self.error = Some((code, reason.to_owned()));
    }

    /// `Server-Timing`: the gateway's own work, the KV read and the wait for the upstream.
    pub fn server_timing(&self) -> String {
        let total = self.elapsed();
        let kv = self.kv_ms.unwrap_or(0.0);
        let upstream = self.upstream_wait_ms.unwrap_or(0.0);
        let gateway = (total - kv - upstream).max(0.0);
        let mut timing = format!("gateway;dur={gateway:.1}");
        if self.kv_ms.is_some() {
            let _ = write!(timing, ", kv;dur={kv:.1}");
        }
        if self.upstream_wait_ms.is_some() {
            let _ = write!(timing, ", upstream;dur={upstream:.1}");
        }
        timing
    }

    /// Moves the trace into whoever finishes the request later (the stream), leaving behind
    /// one that writes nothing.
    pub fn hand_over(&mut self) -> Self {
        let detached = Self { done: true, ..Self::new(&self.id, "", "", LogLevel::Off, None) };
        std::mem::replace(self, detached)
    }

    /// Writes the log line and the data point, once.
    pub fn finish(&mut self, status: u16, outcome: Outcome) {
        if self.done {
            return;
        }
        self.done = true;
        let duration = self.elapsed();
        self.write_metrics(status, outcome, duration);
        let wanted = match self.level {
            LogLevel::Off => false,
            LogLevel::Error => outcome != Outcome::Ok,
            LogLevel::Warn => outcome != Outcome::Ok || self.attempts > 1,
            LogLevel::Info => true,
        };
        if !wanted {
            return;
        }
        let line = self.line(status, outcome, duration);
        match outcome {
            Outcome::Ok => console_log!("{line}"),
            Outcome::ClientError | Outcome::ClientGone => console_warn!("{line}"),
            _ => console_error!("{line}"),
        }
    }

    fn line(&self, status: u16, outcome: Outcome, duration: f64) -> Value {
        let round = |ms: Option<f64>| ms.map(|ms| (ms * 10.0).round() / 10.0);
        let mut line = json!({
            "request_id": self.id,
            "method": self.method,
            "path": self.path,
            "persona": self.persona,
            "upstream_model": self.upstream_model,
            "stream": self.stream,
            "status": status,
            "outcome": outcome.as_str(),
            "attempts": self.attempts,
            "upstream_first_byte_ms": round(self.upstream_first_byte_ms),
            "client_first_byte_ms": round(self.client_first_byte_ms),
            "duration_ms": round(Some(duration)),
            "bytes_out": self.bytes_out,
        });
        if let Some(usage) = self.usage {
            line["prompt_tokens"] = usage.prompt_tokens.into();
            line["completion_tokens"] = usage.completion_tokens.into();
            line["total_tokens"] = usage.total_tokens.into();
        }
        if let Some((class, reason)) = &self.error {
            line["error"] = json!({"class": class, "reason": reason});
        }
        line
    }

    /// One data point per chat request: blobs persona, upstream model, outcome; doubles
    /// requests, errors, prompt, completion and total tokens, duration and upstream wait.
    fn write_metrics(&self, status: u16, outcome: Outcome, duration: f64) {
        let (Some(metrics), Some(persona)) = (&self.metrics, &self.persona) else {
            return;
        };
        let usage = self.usage.unwrap_or_default();
        #[allow(clippy::cast_precision_loss, reason = "token counts stay far below 2^53")]
        let doubles = [
            1.0,
            if outcome == Outcome::Ok { 0.0 } else { 1.0 },
            usage.prompt_tokens as f64,
            usage.completion_tokens as f64,
            usage.total_tokens as f64,
            duration,
            self.upstream_first_byte_ms.unwrap_or(0.0),
        ];
        let upstream_model = self.upstream_model.clone().unwrap_or_default();
        let status = status.to_string();
        let point = AnalyticsEngineDataPointBuilder::new()
            .indexes([persona.as_str()])
            .blobs([persona.as_str(), upstream_model.as_str(), outcome.as_str(), status.as_str()])
            .doubles(doubles);
        // Metrics are best effort: a failed write must not fail the request.
        let _ = point.write_to(metrics);
    }
}
