//! The Worker: receives each request from the runtime, routes it, and turns the core's answers
//! and errors into responses. Only this module and its children touch the `worker` crate.

mod chat;
mod config;
mod observe;
mod personas;
mod stream;
mod upstream;

use worker::{event, Context, Env, Headers, Request, Response};

use crate::error::{GatewayError, Outcome};
use crate::route::{route, Route};
use crate::{models, request_id};

use config::Config;
use observe::Trace;

/// `MAX_BODY_BYTES` unless set: the largest request body the gateway reads.
const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

#[event(fetch)]
async fn fetch(request: Request, env: Env, _context: Context) -> worker::Result<Response> {
    let header = request.headers().get("x-request-id").ok().flatten();
    let id = request_id::for_request(header.as_deref());
    let config = Config::from_env(&env);
    let method = request.method().to_string();
    let mut trace = Trace::start(&id, &method, &request.path(), config.log_level, &env);

    let mut response = match handle(request, &env, &config, &mut trace).await {
        Ok(response) => response,
        Err(error) => {
            trace.fail(&error);
            trace.outcome = Some(error.outcome());
            error_response(&error)
        }
    };
    let headers = response.headers_mut();
    let _ = headers.set("x-request-id", &id);
    if !headers.has("server-timing").unwrap_or(true) {
        let _ = headers.set("server-timing", &trace.server_timing());
    }
    let status = response.status_code();
    let outcome = trace
        .outcome
        .unwrap_or_else(|| Outcome::from_status(status));
    trace.finish(status, outcome);
    Ok(response)
}

async fn handle(
    mut request: Request,
    env: &Env,
    config: &Config,
    trace: &mut Trace,
) -> Result<Response, GatewayError> {
    let method = request.method().to_string();
    match route(&method, &request.path())? {
        Route::Health => json_response(200, r#"{"status":"ok"}"#.to_owned()),
        Route::ListModels => {
            let index = personas::index(env).await?;
            json_response(200, models::model_list(&index, &config.prefix).to_string())
        }
        Route::RetrieveModel(model) => {
            let persona = personas::find(env, config, &model).await?;
            let public = crate::persona::PublicPersona::from(&*persona);
            json_response(
                200,
                models::model_object(&public, &config.prefix).to_string(),
            )
        }
        Route::ChatCompletions => {
            let body = read_body(&mut request, env).await?;
            let client = Some(request.inner().signal());
            let incoming = chat::Incoming {
                body: &body,
                client,
            };
            chat::complete(incoming, env, config, trace).await
        }
    }
}

/// The request body, refused with 413 past `MAX_BODY_BYTES` (by its declared length before it
/// is read, by its real length after).
async fn read_body(request: &mut Request, env: &Env) -> Result<Vec<u8>, GatewayError> {
    let limit = env
        .var("MAX_BODY_BYTES")
        .ok()
        .and_then(|value| value.to_string().trim().parse().ok())
        .unwrap_or(DEFAULT_MAX_BODY_BYTES);
    let declared = request.headers().get("content-length").ok().flatten();
    if declared
        .and_then(|length| length.trim().parse::<usize>().ok())
        .is_some_and(|n| n > limit)
    {
        return Err(GatewayError::BodyTooLarge { limit });
    }
    let body = request.bytes().await.map_err(internal)?;
    if body.len() > limit {
        return Err(GatewayError::BodyTooLarge { limit });
    }
    Ok(body)
}

/// A JSON response with the status given.
fn json_response(status: u16, body: String) -> Result<Response, GatewayError> {
    let headers = Headers::new();
    headers
        .set("content-type", "application/json")
        .map_err(internal)?;
    Ok(Response::builder()
        .with_status(status)
        .with_headers(headers)
        .fixed(body.into_bytes()))
}

/// The OpenAI error object for a failure, with `Allow` on a 405.
fn error_response(error: &GatewayError) -> Response {
    let headers = Headers::new();
    let _ = headers.set("content-type", "application/json");
    if let GatewayError::MethodNotAllowed { allow, .. } = error {
        let _ = headers.set("allow", allow);
    }
    Response::builder()
        .with_status(error.status())
        .with_headers(headers)
        .fixed(error.to_body().into_bytes())
}

/// A runtime failure that should not happen, kept for the log, never shown to the client.
fn internal(error: impl std::fmt::Display) -> GatewayError {
    GatewayError::Internal {
        reason: error.to_string(),
    }
}
