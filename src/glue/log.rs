//! One JSON line per request on the console, which Workers Logs and `wrangler tail` collect.
//! It holds ids, names, statuses and timings: never a prompt, a completion or a key.

use serde_json::json;
use worker::{console_error, console_log, Date, Request};

use crate::error::{GatewayError, Origin};

pub struct RequestLog {
    id: String,
    method: String,
    path: String,
    started_ms: f64,
    persona: Option<String>,
    upstream_model: Option<String>,
    stream: bool,
    error: Option<(&'static str, Origin, String)>,
}

impl RequestLog {
    pub fn start(id: &str, request: &Request) -> Self {
        Self {
            id: id.to_owned(),
            method: request.method().to_string(),
            path: request.path(),
            started_ms: Date::now().as_millis() as f64,
            persona: None,
            upstream_model: None,
            stream: false,
            error: None,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Notes which persona the request is for, once known.
    pub fn persona(&mut self, persona: &str, upstream_model: &str, stream: bool) {
        self.persona = Some(persona.to_owned());
        self.upstream_model = Some(upstream_model.to_owned());
        self.stream = stream;
    }

    pub fn fail(&mut self, error: &GatewayError) {
        let reason = match error {
            GatewayError::Internal { reason } | GatewayError::UpstreamUnreachable { reason } => {
                reason.clone()
            }
            _ => String::new(),
        };
        self.error = Some((error.code(), error.origin(), reason));
    }

    /// Writes the line. A streamed response is logged when its headers go out.
    pub fn finish(&self, status: u16) {
        let duration_ms = Date::now().as_millis() as f64 - self.started_ms;
        let mut line = json!({
            "request_id": self.id,
            "method": self.method,
            "path": self.path,
            "persona": self.persona,
            "upstream_model": self.upstream_model,
            "stream": self.stream,
            "status": status,
            "duration_ms": duration_ms,
        });
        if let Some((code, origin, reason)) = &self.error {
            line["error"] = json!({"code": code, "origin": format!("{origin:?}"), "reason": reason});
        }
        if status >= 500 {
            console_error!("{line}");
        } else {
            console_log!("{line}");
        }
    }
}
