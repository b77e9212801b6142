//! `POST /v1/chat/completions`: shape the request for the persona, call Zaguan, and hand back
//! its answer with the persona's id as the model.

use std::time::Duration;

use futures_util::future::{select, Either};
use worker::{AbortController, Delay, Env, Fetch, Headers, Method, Request, RequestInit, Response};

use super::config::Config;
use super::log::RequestLog;
use super::{internal, personas, stream};
use crate::error::GatewayError;
use crate::request::ChatRequest;
use crate::upstream;

pub async fn complete(
    body: &[u8],
    env: &Env,
    config: &Config,
    log: &mut RequestLog,
) -> Result<Response, GatewayError> {
    let request = ChatRequest::parse(body)?;
    let persona = personas::find(env, &config.prefix, &request.model).await?;
    let persona_id = format!("{}{}", config.prefix, persona.id);
    log.persona(&persona_id, &persona.upstream_model, request.stream);

    let api_key = config.api_key.as_deref().ok_or_else(|| GatewayError::Misconfigured {
        what: "the secret ZAGUAN_API_KEY is not set".to_owned(),
    })?;
    let upstream_body = request.to_upstream_body(&persona);
    let mut answer = send(config, api_key, log.id(), request.stream, upstream_body).await?;

    let status = answer.status_code();
    if !(200..300).contains(&status) {
        return pass_error(&mut answer, status, api_key).await;
    }
    let content_type = answer.headers().get("content-type").ok().flatten().unwrap_or_default();
    if content_type.starts_with("text/event-stream") {
        return stream_answer(&answer, &persona_id);
    }
    let body = answer.bytes().await.map_err(unreachable)?;
    let literal = serde_json::Value::from(persona_id.as_str()).to_string();
    let rewritten = upstream::rewrite_completion(&body, literal.as_bytes())?;
    let headers = Headers::new();
    headers.set("content-type", "application/json").map_err(internal)?;
    Ok(Response::builder().with_status(status).with_headers(headers).fixed(rewritten))
}

/// Posts the shaped body upstream and waits for the response headers, at most the timeout.
async fn send(
    config: &Config,
    api_key: &str,
    request_id: &str,
    stream: bool,
    body: String,
) -> Result<Response, GatewayError> {
    let headers = Headers::new();
    let accept = if stream { "text/event-stream" } else { "application/json" };
    for (name, value) in [
        ("authorization", format!("Bearer {api_key}").as_str()),
        ("content-type", "application/json"),
        ("accept", accept),
        ("x-request-id", request_id),
        ("user-agent", concat!("persona-gateway/", env!("CARGO_PKG_VERSION"))),
    ] {
        headers.set(name, value).map_err(internal)?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_headers(headers).with_body(Some(body.into()));
    let url = format!("{}/chat/completions", config.base_url);
    let request = Request::new_with_init(&url, &init).map_err(|_| GatewayError::Misconfigured {
        what: "ZAGUAN_BASE_URL is not a valid URL".to_owned(),
    })?;

    let controller = AbortController::default();
    let signal = controller.signal();
    let fetch = Fetch::Request(request);
    let sending = fetch.send_with_signal(&signal);
    let timeout = Delay::from(Duration::from_secs(config.timeout_seconds));
    let answer = match select(Box::pin(sending), timeout).await {
        Either::Left((answer, _)) => answer.map_err(unreachable),
        Either::Right(((), _)) => {
            controller.abort();
            Err(GatewayError::UpstreamTimeout { seconds: config.timeout_seconds })
        }
    };
    answer
}

/// An upstream error: its OpenAI-shaped body and rate-limit headers as they came, or a 502 of
/// ours when the body is anything else.
async fn pass_error(
    answer: &mut Response,
    status: u16,
    api_key: &str,
) -> Result<Response, GatewayError> {
    let body = answer.bytes().await.unwrap_or_default();
    let body = upstream::error_body(status, &body, api_key)?;
    let headers = Headers::new();
    headers.set("content-type", "application/json").map_err(internal)?;
    for (name, value) in answer.headers().entries() {
        if upstream::is_passed_header(&name) {
            headers.set(&name, &value).map_err(internal)?;
        }
    }
    Ok(Response::builder().with_status(status).with_headers(headers).fixed(body))
}

fn stream_answer(answer: &Response, persona_id: &str) -> Result<Response, GatewayError> {
    let worker::ResponseBody::Stream(body) = answer.body() else {
        return Err(GatewayError::UpstreamInvalid { reason: "the stream has no body".to_owned() });
    };
    let rewritten = stream::rewrite(body, persona_id)
        .map_err(|error| internal(format!("{error:?}")))?;
    let headers = Headers::new();
    for (name, value) in [
        ("content-type", "text/event-stream; charset=utf-8"),
        ("cache-control", "no-cache"),
        ("x-accel-buffering", "no"),
    ] {
        headers.set(name, value).map_err(internal)?;
    }
    Ok(Response::builder().with_status(200).with_headers(headers).stream(rewritten))
}

fn unreachable(error: worker::Error) -> GatewayError {
    GatewayError::UpstreamUnreachable { reason: error.to_string() }
}
