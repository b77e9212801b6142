//! Calling Zaguan: one `fetch` per attempt under a first-byte timeout, retried with backoff for
//! failures that happen before anything reached the client, always with the same request id.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use wasm_bindgen::closure::Closure;
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};
use worker::js_sys;
use worker::{Delay, Response};

use super::config::Config;
use super::internal;
use super::observe::Trace;
use crate::error::GatewayError;
use crate::retry;

/// The abort switch of the attempt in flight, shared with whoever may need to stop it (the
/// client leaving, a stream going idle).
pub type Switch = Rc<RefCell<Option<web_sys::AbortController>>>;

/// An upstream answer, its whole body when it was read in the attempt (anything but a
/// successful event stream), and the switch that aborts its body.
pub struct Answer {
    pub response: Response,
    pub body: Option<Vec<u8>>,
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
        if client.is_some_and(web_sys::AbortSignal::aborted) {
            return Err(GatewayError::ClientGone);
        }
        trace.attempts += 1;
        let outcome = attempt(config, api_key, &trace.id, stream, body, &switch).await;
        let advice = match &outcome {
            Ok(answer) if retry::is_retryable_status(answer.response.status_code()) => {
                let header = |name| answer.response.headers().get(name).ok().flatten();
                retry::retry_after(
                    header("retry-after-ms").as_deref(),
                    header("retry-after").as_deref(),
                )
            }
            Err(GatewayError::UpstreamUnreachable { .. }) => None,
            _ => return outcome.map(|answer| answer.with_switch(switch)),
        };
        let Some(delay) = config.retry.delay(trace.attempts + 1, advice, waited, random()) else {
            return outcome.map(|answer| answer.with_switch(switch));
        };
        Delay::from(delay).await;
        waited += delay;
    }
}

/// What one attempt brought back.
struct Attempt {
    response: Response,
    body: Option<Vec<u8>>,
}

impl Attempt {
    fn with_switch(self, switch: Switch) -> Answer {
        Answer { response: self.response, body: self.body, switch }
    }
}

#[wasm_bindgen(module = "/src/glue/upstream.js")]
extern "C" {
    fn post(
        url: &str,
        authorization: &str,
        request_id: &str,
        body: &[u8],
        stream: bool,
        timeouts: Vec<u32>,
        controller: &web_sys::AbortController,
    ) -> js_sys::Promise;
}

/// One `fetch`, given up after the first-byte timeout; a whole body is read here too, within
/// the idle timeout, so that a body that breaks off is retried like a failed connection.
async fn attempt(
    config: &Config,
    api_key: &str,
    request_id: &str,
    stream: bool,
    body: &str,
    switch: &Switch,
) -> Result<Attempt, GatewayError> {
    let controller = web_sys::AbortController::new().map_err(|e| internal(format!("{e:?}")))?;
    *switch.borrow_mut() = Some(controller.clone());
    let url = format!("{}/chat/completions", config.base_url);
    let millis = |duration: Duration| u32::try_from(duration.as_millis()).unwrap_or(u32::MAX);
    let timeouts = vec![millis(config.first_byte_timeout), millis(config.idle_timeout)];
    let authorization = format!("Bearer {api_key}");
    let sent =
        post(&url, &authorization, request_id, body.as_bytes(), stream, timeouts, &controller);
    match js_sys::futures::JsFuture::from(sent).await {
        Ok(answer) => {
            let answer = js_sys::Array::from(&answer);
            let response: web_sys::Response =
                answer.get(0).dyn_into().map_err(|_| GatewayError::UpstreamInvalid {
                    reason: "fetch gave something other than a response".to_owned(),
                })?;
            let body = answer.get(1).dyn_into::<js_sys::Uint8Array>().ok().map(|b| b.to_vec());
            Ok(Attempt { response: Response::from(response), body })
        }
        Err(_) if timed_out(&controller) => {
            Err(GatewayError::UpstreamTimeout { seconds: config.first_byte_timeout.as_secs() })
        }
        Err(error) => Err(GatewayError::UpstreamUnreachable { reason: describe(&error) }),
    }
}

fn timed_out(controller: &web_sys::AbortController) -> bool {
    let reason = controller.signal().reason();
    js_sys::Reflect::get(&reason, &"name".into()).ok().and_then(|name| name.as_string())
        == Some("TimeoutError".to_owned())
}

/// A short description of a failed fetch, for the log.
fn describe(error: &JsValue) -> String {
    let message = js_sys::Reflect::get(error, &"message".into()).ok().and_then(|m| m.as_string());
    message.or_else(|| error.as_string()).unwrap_or_else(|| "fetch failed".to_owned())
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

fn random() -> u32 {
    let mut bytes = [0u8; 4];
    let _ = getrandom::fill(&mut bytes);
    u32::from_le_bytes(bytes)
}
