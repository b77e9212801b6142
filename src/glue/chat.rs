//! `POST /v1/chat/completions`: shape the request for the persona, call Zaguan, and hand back
//! its answer with the persona's id as the model.

use wasm_bindgen::JsValue;
use worker::{Env, Headers, Response};

use super::config::Config;
use super::observe::Trace;
use super::upstream::{self, Answer};
use super::{internal, personas, pump};
use crate::error::{GatewayError, Outcome};
use crate::request::ChatRequest;
use crate::sse::Rewriter;

/// The request as the client sent it, with what the gateway knows of the connection.
pub struct Incoming<'a> {
    pub body: &'a [u8],
    /// The client's abort signal: it fires when the client goes away.
    pub client: Option<web_sys::AbortSignal>,
    /// The request's execution context, as a JavaScript value.
    pub context: JsValue,
}

pub async fn complete(
    incoming: Incoming<'_>,
    env: &Env,
    config: &Config,
    trace: &mut Trace,
) -> Result<Response, GatewayError> {
    let request = ChatRequest::parse(incoming.body)?;
    let kv_started = super::observe::now();
    let prepared = personas::find(env, config, &request.model).await?;
    let persona = &prepared.persona;
    trace.kv_ms = Some(super::observe::now() - kv_started);
    let persona_id = format!("{}{}", config.prefix, persona.id);
    trace.persona = Some(persona_id.clone());
    trace.upstream_model = Some(persona.upstream_model.clone());
    trace.stream = request.stream;

    let api_key = config.api_key.as_deref().ok_or_else(|| GatewayError::Misconfigured {
        what: "the secret ZAGUAN_API_KEY is not set".to_owned(),
    })?;
    let body = request.to_upstream_body(&prepared, true);
    let client = incoming.client.as_ref();
    let asked = trace.elapsed();
    let Answer { response, body: whole, switch } =
        upstream::call(config, api_key, trace, request.stream, &body, client).await?;
    let answered = trace.elapsed();
    trace.upstream_first_byte_ms = Some(answered);
    trace.upstream_wait_ms = Some(answered - asked);

    let status = response.status_code();
    if !(200..300).contains(&status) && status < 400 {
        // Redirects are not followed (they would carry the prompt elsewhere) nor passed on.
        return Err(GatewayError::UpstreamStatus { status });
    }
    if !(200..300).contains(&status) {
        trace.outcome = Some(Outcome::UpstreamError);
        trace.note_failure("upstream_status", &format!("the upstream answered {status}"));
        let body = crate::upstream::error_body(status, &whole.unwrap_or_default(), api_key)?;
        return error_answer(status, body, Some(&response));
    }
    // Only a successful event stream comes without its body: everything else was read whole.
    if let Some(body) = whole {
        return complete_whole(&body, status, &persona_id, api_key, trace);
    }
    let mut rewriter =
        Rewriter::with_max_event_bytes(&persona_id, config.max_event_bytes).redacting(api_key);
    if !request.wants_usage() {
        rewriter = rewriter.dropping_usage_chunks();
    }
    let server_timing = trace.server_timing();
    let setup = pump::Setup {
        rewriter,
        trace: trace.hand_over(),
        switch,
        idle_timeout: config.idle_timeout,
        client: incoming.client,
        context: incoming.context,
    };
    stream_answer(&response, setup, &server_timing)
}

/// A non-streaming answer: the completion with its `model` rewritten.
fn complete_whole(
    body: &[u8],
    status: u16,
    persona_id: &str,
    api_key: &str,
    trace: &mut Trace,
) -> Result<Response, GatewayError> {
    if crate::upstream::is_openai_error(body) {
        // An error under a 2xx status: the SDKs would take it for an empty completion.
        trace.outcome = Some(Outcome::UpstreamError);
        return error_answer(502, crate::upstream::redact(body, api_key), None);
    }
    let literal = serde_json::Value::from(persona_id).to_string();
    let (rewritten, usage) = crate::upstream::rewrite_completion(body, literal.as_bytes())?;
    trace.usage = usage;
    trace.bytes_out = rewritten.len() as u64;
    let headers = Headers::new();
    headers.set("content-type", "application/json").map_err(internal)?;
    Ok(Response::builder().with_status(status).with_headers(headers).fixed(rewritten))
}

/// An OpenAI error body under `status`, with the rate-limit headers of `upstream` if given.
fn error_answer(
    status: u16,
    body: Vec<u8>,
    upstream: Option<&Response>,
) -> Result<Response, GatewayError> {
    let headers = Headers::new();
    headers.set("content-type", "application/json").map_err(internal)?;
    let entries = upstream.map(|response| response.headers().entries());
    for (name, value) in entries.into_iter().flatten() {
        if crate::upstream::is_passed_header(&name) {
            headers.set(&name, &value).map_err(internal)?;
        }
    }
    Ok(Response::builder().with_status(status).with_headers(headers).fixed(body))
}

fn stream_answer(
    response: &Response,
    setup: pump::Setup,
    server_timing: &str,
) -> Result<Response, GatewayError> {
    let worker::ResponseBody::Stream(body) = response.body() else {
        return Err(GatewayError::UpstreamInvalid { reason: "the stream has no body".to_owned() });
    };
    let rewritten = pump::rewrite(body, setup);
    let headers = Headers::new();
    for (name, value) in [
        ("content-type", "text/event-stream; charset=utf-8"),
        ("cache-control", "no-cache"),
        ("x-accel-buffering", "no"),
        ("server-timing", server_timing),
    ] {
        headers.set(name, value).map_err(internal)?;
    }
    Ok(Response::builder().with_status(200).with_headers(headers).stream(rewritten))
}
