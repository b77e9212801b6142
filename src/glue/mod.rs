//! The Worker: receives each request from the runtime, routes it, and turns the core's answers
//! and errors into responses. Only this module and its children touch the `worker` crate.

mod access;
mod chat;
mod config;
mod observe;
mod personas;
mod pump;
mod upstream;

use worker::{event, Context, Env, Headers, Request, Response};

use crate::error::{GatewayError, Outcome};
use crate::route::{route, Route};
use crate::{cors, models, request_id};

use config::Config;
use observe::Trace;

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

#[event(fetch)]
async fn fetch(request: Request, env: Env, context: Context) -> worker::Result<Response> {
    let header = |name: &str| request.headers().get(name).ok().flatten();
    let id = request_id::for_request(header("x-request-id").as_deref());
    let config = Config::get(&env);
    let origin = header("origin");
    let origin =
        cors::allowed_origin(&config.allowed_origins, origin.as_deref()).map(str::to_owned);
    let method = request.method().to_string();
    let mut trace = Trace::start(&id, &method, &request.path(), config.log_level, &env);
    if method == "OPTIONS" {
        let requested = header("access-control-request-headers");
        let mut response = preflight(origin.as_deref(), requested.as_deref(), &config);
        let headers = response.headers_mut();
        let _ = headers.set("x-request-id", &id);
        let _ = headers.set("server-timing", &trace.server_timing());
        trace.finish(204, Outcome::Ok);
        return Ok(response);
    }

    let context: &wasm_bindgen::JsValue = context.as_ref();
    let mut response = match handle(request, &env, &config, context, &mut trace).await {
        Ok(response) => response,
        Err(error) => {
            trace.fail(&error);
            trace.outcome = Some(error.outcome());
            error_response(&error, &config)
        }
    };
    let headers = response.headers_mut();
    let _ = headers.set("x-request-id", &id);
    if !headers.has("server-timing").unwrap_or(true) {
        let _ = headers.set("server-timing", &trace.server_timing());
    }
    if let Some(origin) = &origin {
        allow_origin(headers, origin);
    } else if !config.allowed_origins.is_empty() {
        let _ = headers.append("vary", "Origin");
    }
    if let worker::ResponseBody::Body(body) = response.body() {
        trace.bytes_out = body.len() as u64;
    }
    let status = response.status_code();
    let outcome = trace.outcome.unwrap_or_else(|| Outcome::from_status(status));
    trace.finish(status, outcome);
    Ok(response)
}

async fn handle(
    mut request: Request,
    env: &Env,
    config: &Config,
    context: &wasm_bindgen::JsValue,
    trace: &mut Trace,
) -> Result<Response, GatewayError> {
    let method = request.method().to_string();
    let route = route(&method, &request.path())?;
    if route != Route::Health {
        let caller = access::authorize(&request, env, config).await?;
        access::rate_limit(env, &caller, config).await?;
    }
    match route {
        Route::Health => json_response(200, r#"{"status":"ok"}"#.to_owned()),
        Route::ListModels => {
            let index = personas::index(env).await?;
            json_response(200, models::model_list(&index, &config.prefix).to_string())
        }
        Route::RetrieveModel(model) => {
            let prepared = personas::find(env, config, &model).await?;
            let public = crate::persona::PublicPersona::from(&prepared.persona);
            json_response(200, models::model_object(&public, &config.prefix).to_string())
        }
        Route::ChatCompletions => {
            let body = read_body(&mut request, config.max_body_bytes).await?;
            let client = Some(request.inner().signal());
            let incoming = chat::Incoming { body: &body, client, context: context.clone() };
            chat::complete(incoming, env, config, trace).await
        }
    }
}

/// The request body, refused with 413 past `limit` bytes (by its declared length before it is
/// read, by its real length after).
async fn read_body(request: &mut Request, limit: usize) -> Result<Vec<u8>, GatewayError> {
    let declared = request.headers().get("content-length").ok().flatten();
    let declared = declared.and_then(|length| length.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(GatewayError::BodyTooLarge { limit });
    }
    // A body that cannot be read was cut short by the client.
    let body = request.bytes().await.map_err(|_| GatewayError::ClientGone)?;
    if body.len() > limit {
        return Err(GatewayError::BodyTooLarge { limit });
    }
    Ok(body)
}

/// The answer to a CORS preflight, given before any key is checked.
fn preflight(origin: Option<&str>, requested: Option<&str>, config: &Config) -> Response {
    let headers = Headers::new();
    let _ = headers.set("allow", cors::ALLOWED_METHODS);
    if origin.is_none() && !config.allowed_origins.is_empty() {
        let _ = headers.append("vary", "Origin");
    }
    if let Some(origin) = origin {
        allow_origin(&headers, origin);
        let allowed = cors::allowed_request_headers(requested);
        let _ = headers.set("access-control-allow-methods", cors::ALLOWED_METHODS);
        let _ = headers.set("access-control-allow-headers", &allowed);
        let _ = headers.set("access-control-max-age", cors::MAX_AGE);
    }
    Response::builder().with_status(204).with_headers(headers).empty()
}

fn allow_origin(headers: &Headers, origin: &str) {
    let _ = headers.set("access-control-allow-origin", origin);
    let _ = headers.set("access-control-expose-headers", cors::EXPOSED_HEADERS);
    let _ = headers.append("vary", "Origin");
}

/// A JSON response with the status given.
fn json_response(status: u16, body: String) -> Result<Response, GatewayError> {
    let headers = Headers::new();
    headers.set("content-type", "application/json").map_err(internal)?;
    Ok(Response::builder().with_status(status).with_headers(headers).fixed(body.into_bytes()))
}

/// The OpenAI error object for a failure, with `Allow` on a 405, `WWW-Authenticate` on a 401
/// and `Retry-After` on our own 429.
fn error_response(error: &GatewayError, config: &Config) -> Response {
    let headers = Headers::new();
    let _ = headers.set("content-type", "application/json");
    match error {
        GatewayError::MethodNotAllowed { allow, .. } => {
            let _ = headers.set("allow", allow);
        }
        GatewayError::InvalidApiKey { .. } => {
            let _ = headers.set("www-authenticate", "Bearer");
        }
        GatewayError::RateLimited { .. } => {
            let _ = headers.set("retry-after", &config.rate_limit_period.to_string());
        }
        _ => {}
    }
    Response::builder()
        .with_status(error.status())
        .with_headers(headers)
        .fixed(error.to_body().into_bytes())
}

/// A runtime failure that should not happen, kept for the log, never shown to the client.
fn internal(error: impl std::fmt::Display) -> GatewayError {
    GatewayError::Internal { reason: error.to_string() }
}
