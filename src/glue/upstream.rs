//! Calling Zaguan: one `fetch` per attempt under a first-byte timeout, retried with backoff for
//! failures that happen before anything reached the client, always with the same request id.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use futures_util::future::{select, Either};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use worker::{AbortSignal, Delay, Fetch, Headers, Method, Request, RequestInit, Response};

use super::config::Config;
use super::internal;
use super::observe::Trace;
use crate::error::GatewayError;
use crate::retry;

/// The abort switch of the attempt in flight, shared with whoever may need to stop it (the
/// client leaving, a stream going idle).
pub type Switch = Rc<RefCell<Option<web_sys::AbortController>>>;

/// An upstream answer and the switch that aborts its body.
pub struct Answer {
    pub response: Response,
    pub switch: Switch,
}

/// Sends the body upstream, retrying connection failures and the statuses
/// [`retry::is_retryable_status`] names while the policy allows. A retryable status that runs
/// out of attempts is returned as it is, for the caller to pass on.
pub async fn call(
    config: &Config,
    api_key: &str,
    trace: &mut Trace,
    stream: bool,
    body: &str,
    client: Option<&web_sys::AbortSignal>,
) -> Result<Answer, GatewayError> {
    let switch: Switch = Rc::new(RefCell::new(None));
    if let Some(client) = client {
        stop_when_client_leaves(client, &switch);
    }
    let mut waited = Duration::ZERO;
    loop {
        trace.attempts += 1;
        let outcome = attempt(config, api_key, &trace.id, stream, body, &switch).await;
        let advice = match &outcome {
            Ok(response) if retry::is_retryable_status(response.status_code()) => {
                let header = |name| response.headers().get(name).ok().flatten();
                retry::retry_after(
                    header("retry-after-ms").as_deref(),
                    header("retry-after").as_deref(),
                )
            }
            Err(GatewayError::UpstreamUnreachable { .. }) => None,
            _ => return outcome.map(|response| Answer { response, switch }),
        };
        let Some(delay) = config.retry.delay(trace.attempts + 1, advice, waited, random()) else {
            return outcome.map(|response| Answer { response, switch });
        };
        if let Ok(mut response) = outcome {
            discard(&mut response);
        }
        Delay::from(delay).await;
        waited += delay;
    }
}

/// One `fetch`, given up after the first-byte timeout.
async fn attempt(
    config: &Config,
    api_key: &str,
    request_id: &str,
    stream: bool,
    body: &str,
    switch: &Switch,
) -> Result<Response, GatewayError> {
    let controller = web_sys::AbortController::new().map_err(|e| internal(format!("{e:?}")))?;
    let signal = AbortSignal::from(controller.signal());
    *switch.borrow_mut() = Some(controller);
    let request = build(config, api_key, request_id, stream, body)?;
    let fetch = Fetch::Request(request);
    let sending = fetch.send_with_signal(&signal);
    let timeout = Delay::from(config.first_byte_timeout);
    let answer = match select(Box::pin(sending), timeout).await {
        Either::Left((answer, _)) => {
            answer.map_err(|error| GatewayError::UpstreamUnreachable { reason: error.to_string() })
        }
        Either::Right(((), _)) => {
            abort(switch);
            let seconds = config.first_byte_timeout.as_secs();
            Err(GatewayError::UpstreamTimeout { seconds })
        }
    };
    answer
}

fn build(
    config: &Config,
    api_key: &str,
    request_id: &str,
    stream: bool,
    body: &str,
) -> Result<Request, GatewayError> {
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
    Request::new_with_init(&url, &init).map_err(|_| GatewayError::Misconfigured {
        what: "ZAGUAN_BASE_URL is not a valid URL".to_owned(),
    })
}

/// Aborts the attempt in flight, and with it the body it is streaming.
pub fn abort(switch: &Switch) {
    if let Ok(current) = switch.try_borrow() {
        if let Some(controller) = current.as_ref() {
            controller.abort();
        }
    }
}

/// Arms the client's request signal (the `enable_request_signal` flag) to abort the upstream.
fn stop_when_client_leaves(client: &web_sys::AbortSignal, switch: &Switch) {
    let switch = Rc::clone(switch);
    let on_abort = Closure::<dyn FnMut()>::new(move || abort(&switch));
    client.set_onabort(Some(on_abort.into_js_value().unchecked_ref()));
}

/// Lets go of a response that will not be used, so its connection is freed.
fn discard(response: &mut Response) {
    if let worker::ResponseBody::Stream(body) = response.body() {
        let _ = body.cancel();
    }
}

fn random() -> u32 {
    let mut bytes = [0u8; 4];
    let _ = getrandom::fill(&mut bytes);
    u32::from_le_bytes(bytes)
}
