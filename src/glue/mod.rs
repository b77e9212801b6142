//! The Worker: receives each request from the runtime, routes it, and turns the core's answers
//! and errors into responses. Only this module and its children touch the `worker` crate.

mod chat;
mod config;
mod log;
mod personas;
mod stream;

use worker::{event, Context, Env, Headers, Request, Response};

use crate::error::GatewayError;
use crate::route::{route, Route};
use crate::{models, request_id};

use config::Config;
use log::RequestLog;

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

#[event(fetch)]
async fn fetch(request: Request, env: Env, _context: Context) -> worker::Result<Response> {
    let id = request_id::for_request(request.headers().get("x-request-id").ok().flatten().as_deref());
    let mut log = RequestLog::start(&id, &request);
    let outcome = handle(request, &env, &mut log).await;
    let mut response = outcome.unwrap_or_else(|error| {
        log.fail(&error);
        error_response(&error)
    });
    let _ = response.headers_mut().set("x-request-id", &id);
    log.finish(response.status_code());
    Ok(response)
}

async fn handle(
    mut request: Request,
    env: &Env,
    log: &mut RequestLog,
) -> Result<Response, GatewayError> {
    let method = request.method().to_string();
    let path = request.path();
    let config = Config::from_env(env);
    match route(&method, &path)? {
        Route::Health => json_response(200, r#"{"status":"ok"}"#.to_owned()),
        Route::ListModels => {
            let index = personas::index(env).await?;
            json_response(200, models::model_list(&index, &config.prefix).to_string())
        }
        Route::RetrieveModel(model) => {
            let persona = personas::find(env, &config.prefix, &model).await?;
            let public = crate::persona::PublicPersona::from(&persona);
            json_response(200, models::model_object(&public, &config.prefix).to_string())
        }
        Route::ChatCompletions => {
            let body = request.bytes().await.map_err(internal)?;
            chat::complete(&body, env, &config, log).await
        }
    }
}

/// A JSON response with the status given.
fn json_response(status: u16, body: String) -> Result<Response, GatewayError> {
    let headers = Headers::new();
    headers.set("content-type", "application/json").map_err(internal)?;
    Ok(Response::builder().with_status(status).with_headers(headers).fixed(body.into_bytes()))
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
    GatewayError::Internal { reason: error.to_string() }
}
