//! Every way a request can fail, whose fault it was, and the one mapping from a failure to an
//! HTTP status and OpenAI's error object: `{"error":{"message","type","param","code"}}`.

use serde_json::json;

/// Whose fault a failure was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Client,
    Upstream,
    Gateway,
}

/// How a request ended, as the logs and metrics count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    ClientError,
    UpstreamError,
    Timeout,
    /// The client left before the response was complete.
    ClientGone,
    GatewayError,
}

impl Outcome {
    /// The outcome a final status implies when nothing more specific is known.
    #[must_use]
    pub fn from_status(status: u16) -> Self {
        match status {
            0..=399 => Self::Ok,
            504 => Self::Timeout,
            400..=499 => Self::ClientError,
            _ => Self::UpstreamError,
        }
    }

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::ClientError => "client_error",
            Self::UpstreamError => "upstream_error",
            Self::Timeout => "timeout",
            Self::ClientGone => "client_gone",
            Self::GatewayError => "gateway_error",
        }
    }
}

/// A failure the gateway answers itself. Upstream errors that are already in OpenAI's format
/// are passed through instead, and never become one of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayError {
    /// The body is not JSON, or not an object.
    InvalidJson { detail: String },
    /// A parameter is missing, of the wrong type or out of range.
    InvalidParameter { param: String, message: String },
    /// A key appears twice in the request object.
    DuplicateKey { param: String },
    /// No usable client key: missing, wrong, or none configured (the gateway fails closed).
    InvalidApiKey { fault: KeyFault },
    /// The client's key sent more requests than its limit allows.
    RateLimited { retry_after_seconds: u64 },
    /// The request body is larger than the gateway accepts.
    BodyTooLarge { limit: usize },
    /// `model` names no persona this gateway serves.
    ModelNotFound { model: String },
    /// No route has this path.
    UnknownPath { method: String, path: String },
    /// The path exists but not for this method.
    MethodNotAllowed { method: String, path: String, allow: &'static str },
    /// The client left before an answer was ready (the status only reaches the log).
    ClientGone,
    /// The upstream could not be reached or broke off before answering.
    UpstreamUnreachable { reason: String },
    /// The upstream answered with an error that is not in OpenAI's format.
    UpstreamStatus { status: u16 },
    /// The upstream answered 2xx with a body that is not a chat completion.
    UpstreamInvalid { reason: String },
    /// The upstream did not answer in time.
    UpstreamTimeout { seconds: u64 },
    /// The deployment lacks something it needs (a var, a secret, a binding).
    Misconfigured { what: String },
    /// A persona record in KV does not parse or validate.
    CorruptPersona { slug: String },
    /// A runtime call failed where it should not.
    Internal { reason: String },
}

/// Why a client key was refused. The message never quotes the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFault {
    Missing,
    Wrong,
    NoneConfigured,
}

/// Longest slice of client text quoted back in an error message.
const MAX_ECHO: usize = 64;

impl GatewayError {
    #[must_use]
    pub fn origin(&self) -> Origin {
        match self {
            Self::InvalidJson { .. }
            | Self::InvalidParameter { .. }
            | Self::DuplicateKey { .. }
            | Self::InvalidApiKey { .. }
            | Self::RateLimited { .. }
            | Self::BodyTooLarge { .. }
            | Self::ModelNotFound { .. }
            | Self::UnknownPath { .. }
            | Self::MethodNotAllowed { .. }
            | Self::ClientGone => Origin::Client,
            Self::UpstreamUnreachable { .. }
            | Self::UpstreamStatus { .. }
            | Self::UpstreamInvalid { .. }
            | Self::UpstreamTimeout { .. } => Origin::Upstream,
            Self::Misconfigured { .. } | Self::CorruptPersona { .. } | Self::Internal { .. } => {
                Origin::Gateway
            }
        }
    }

    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            Self::InvalidJson { .. }
            | Self::InvalidParameter { .. }
            | Self::DuplicateKey { .. } => 400,
            Self::InvalidApiKey { .. } => 401,
            Self::RateLimited { .. } => 429,
            Self::BodyTooLarge { .. } => 413,
            Self::ModelNotFound { .. } | Self::UnknownPath { .. } => 404,
            Self::MethodNotAllowed { .. } => 405,
            Self::ClientGone => 499,
            Self::UpstreamUnreachable { .. }
            | Self::UpstreamStatus { .. }
            | Self::UpstreamInvalid { .. } => 502,
            Self::UpstreamTimeout { .. } => 504,
            Self::Misconfigured { .. } | Self::CorruptPersona { .. } | Self::Internal { .. } => 500,
        }
    }

    /// How a request that failed this way ended.
    #[must_use]
    pub fn outcome(&self) -> Outcome {
        match (self, self.origin()) {
            (Self::UpstreamTimeout { .. }, _) => Outcome::Timeout,
            (Self::ClientGone, _) => Outcome::ClientGone,
            (_, Origin::Client) => Outcome::ClientError,
            (_, Origin::Upstream) => Outcome::UpstreamError,
            (_, Origin::Gateway) => Outcome::GatewayError,
        }
    }

    /// The OpenAI `type`.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        if let Self::RateLimited { .. } = self {
            return "rate_limit_error";
        }
        match self.origin() {
            Origin::Client => "invalid_request_error",
            Origin::Upstream => "upstream_error",
            Origin::Gateway => "server_error",
        }
    }

    /// The OpenAI `code`, stable for clients to match on.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidJson { .. } => "invalid_json",
            Self::InvalidParameter { .. } => "invalid_parameter",
            Self::DuplicateKey { .. } => "duplicate_key",
            Self::InvalidApiKey { .. } => "invalid_api_key",
            Self::RateLimited { .. } => "rate_limit_exceeded",
            Self::BodyTooLarge { .. } => "request_too_large",
            Self::ModelNotFound { .. } => "model_not_found",
            Self::UnknownPath { .. } => "unknown_url",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::ClientGone => "client_gone",
            Self::UpstreamUnreachable { .. } => "upstream_unreachable",
            Self::UpstreamStatus { .. } => "upstream_error",
            Self::UpstreamInvalid { .. } => "upstream_invalid_response",
            Self::UpstreamTimeout { .. } => "upstream_timeout",
            Self::Misconfigured { .. } => "gateway_misconfigured",
            Self::CorruptPersona { .. } => "persona_invalid",
            Self::Internal { .. } => "internal_error",
        }
    }

    /// The OpenAI `param`: the request field at fault, when there is one.
    #[must_use]
    pub fn param(&self) -> Option<&str> {
        match self {
            Self::InvalidParameter { param, .. } | Self::DuplicateKey { param } => Some(param),
            Self::ModelNotFound { .. } => Some("model"),
            _ => None,
        }
    }

    /// The human-readable message. It quotes client text only shortened, and never holds a key,
    /// a system prompt or upstream body text.
    #[must_use]
    pub fn message(&self) -> String {
        match self {
            Self::InvalidJson { detail } => {
                format!("We could not parse the JSON body of your request: {detail}.")
            }
            Self::InvalidParameter { message, .. } => message.clone(),
            Self::DuplicateKey { param } => {
                format!("The key `{}` appears more than once in the request body.", echo(param))
            }
            Self::InvalidApiKey { fault: KeyFault::Missing } => "You didn't provide an API key. \
                 Send it as `Authorization: Bearer <key>`."
                .to_owned(),
            Self::InvalidApiKey { fault: KeyFault::Wrong } => {
                "Incorrect API key provided.".to_owned()
            }
            Self::InvalidApiKey { fault: KeyFault::NoneConfigured } => "This gateway accepts no \
                 API keys yet: its operator must set GATEWAY_API_KEYS."
                .to_owned(),
            Self::RateLimited { retry_after_seconds } => format!(
                "Rate limit reached for this API key. Try again in {retry_after_seconds} seconds."
            ),
            Self::BodyTooLarge { limit } => {
                format!("The request body is larger than the limit of {limit} bytes.")
            }
            Self::ModelNotFound { model } => format!(
                "The model `{}` does not exist or you do not have access to it.",
                echo(model)
            ),
            Self::UnknownPath { method, path } => {
                format!("Invalid URL ({} {}).", echo(method), echo(path))
            }
            Self::MethodNotAllowed { method, path, allow } => {
                format!("Method {} is not allowed on {}; use {allow}.", echo(method), echo(path))
            }
            Self::ClientGone => "The client closed the connection.".to_owned(),
            Self::UpstreamUnreachable { reason } => {
                format!("The upstream API could not be reached: {}.", reason.trim_end_matches('.'))
            }
            Self::UpstreamStatus { status } => format!(
                "The upstream API answered with status {status} and a body that is not an \
                 OpenAI error."
            ),
            Self::UpstreamInvalid { reason } => {
                format!("The upstream API sent an invalid response: {reason}.")
            }
            Self::UpstreamTimeout { seconds } => {
                format!("The upstream API did not answer within {seconds} seconds.")
            }
            Self::Misconfigured { what } => format!("The gateway is misconfigured: {what}."),
            Self::CorruptPersona { slug } => {
                format!("The persona `{slug}` is stored in a form the gateway cannot read.")
            }
            Self::Internal { .. } => "The gateway failed while handling the request.".to_owned(),
        }
    }

    /// OpenAI's error object as JSON text.
    #[must_use]
    pub fn to_body(&self) -> String {
        json!({
            "error": {
                "message": self.message(),
                "type": self.kind(),
                "param": self.param(),
                "code": self.code(),
            }
        })
        .to_string()
    }
}

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for GatewayError {}

/// Client text shortened for quoting, cut at a character boundary.
fn echo(text: &str) -> String {
    if text.len() <= MAX_ECHO {
        return text.to_owned();
    }
    let mut end = MAX_ECHO;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_variant() -> Vec<(GatewayError, u16, &'static str, Option<&'static str>)> {
        use GatewayError as E;
        let text = |s: &str| s.to_owned();
        vec![
            (E::InvalidJson { detail: text("EOF") }, 400, "invalid_request_error", None),
            (
                E::InvalidParameter { param: text("messages"), message: text("m") },
                400,
                "invalid_request_error",
                Some("messages"),
            ),
            (E::DuplicateKey { param: text("model") }, 400, "invalid_request_error", Some("model")),
            (E::BodyTooLarge { limit: 10 }, 413, "invalid_request_error", None),
            (E::ModelNotFound { model: text("x") }, 404, "invalid_request_error", Some("model")),
            (
                E::UnknownPath { method: text("GET"), path: text("/x") },
                404,
                "invalid_request_error",
                None,
            ),
            (
                E::MethodNotAllowed {
                    method: text("GET"),
                    path: text("/v1/chat/completions"),
                    allow: "POST",
                },
                405,
                "invalid_request_error",
                None,
            ),
            (E::ClientGone, 499, "invalid_request_error", None),
            (E::UpstreamUnreachable { reason: text("reset") }, 502, "upstream_error", None),
            (E::UpstreamStatus { status: 503 }, 502, "upstream_error", None),
            (E::UpstreamInvalid { reason: text("not JSON") }, 502, "upstream_error", None),
            (E::UpstreamTimeout { seconds: 30 }, 504, "upstream_error", None),
            (E::Misconfigured { what: text("no key") }, 500, "server_error", None),
            (E::CorruptPersona { slug: text("a") }, 500, "server_error", None),
            (E::Internal { reason: text("secret detail") }, 500, "server_error", None),
        ]
    }

    #[test]
    fn every_variant_maps_to_its_status_and_openai_error_object() {
        for (error, status, kind, param) in every_variant() {
            assert_eq!(error.status(), status, "{error:?}");
            let body: serde_json::Value =
                serde_json::from_str(&error.to_body()).unwrap_or_default();
            let object = &body["error"];
            assert_eq!(object["type"], kind, "{error:?}");
            assert_eq!(object["param"].as_str(), param, "{error:?}");
            assert_eq!(object["code"], error.code(), "{error:?}");
            assert!(object["message"].as_str().is_some_and(|m| !m.is_empty()), "{error:?}");
            assert_eq!(body.as_object().map(serde_json::Map::len), Some(1));
            assert_eq!(object.as_object().map(serde_json::Map::len), Some(4));
        }
    }

    #[test]
    fn outcomes_follow_the_origin() {
        for (error, status, _, _) in every_variant() {
            let expected = match (status, error.origin()) {
                (504, _) => Outcome::Timeout,
                (499, _) => Outcome::ClientGone,
                (_, Origin::Client) => Outcome::ClientError,
                (_, Origin::Upstream) => Outcome::UpstreamError,
                (_, Origin::Gateway) => Outcome::GatewayError,
            };
            assert_eq!(error.outcome(), expected, "{error:?}");
        }
        assert_eq!(Outcome::from_status(200), Outcome::Ok);
        assert_eq!(Outcome::from_status(404), Outcome::ClientError);
        assert_eq!(Outcome::from_status(429), Outcome::ClientError);
        assert_eq!(Outcome::from_status(502), Outcome::UpstreamError);
        assert_eq!(Outcome::from_status(504).as_str(), "timeout");
    }

    #[test]
    fn internal_detail_stays_out_of_the_body() {
        let error = GatewayError::Internal { reason: "secret detail".into() };
        assert!(!error.to_body().contains("secret detail"));
    }

    #[test]
    fn long_client_text_is_shortened_at_a_character_boundary() {
        let model = "é".repeat(100);
        let message = GatewayError::ModelNotFound { model }.message();
        assert!(message.len() < 140, "{message}");
        assert!(message.contains("..."));
    }

    #[test]
    fn quotes_in_client_text_stay_valid_json() {
        let error = GatewayError::ModelNotFound { model: "a\"}\n".into() };
        let body: serde_json::Value = serde_json::from_str(&error.to_body()).unwrap_or_default();
        assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("a\"}\n")));
    }
}
