//! The streaming transform: the upstream body piped through a `TransformStream` whose transform
//! is the core's [`Rewriter`]. Each upstream read is rewritten and enqueued as it arrives; the
//! pipe carries backpressure forward and cancellation back to the upstream fetch. A watchdog
//! ends a stream whose upstream goes quiet, and the request's log line is written when the
//! stream really ends.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{ReadableStream, ReadableWritablePair, TransformStream};
use web_sys::{TransformStreamDefaultController as Controller, WorkerGlobalScope};
use worker::js_sys::{self, Function, Object, Reflect, Uint8Array};

use super::observe::Trace;
use super::upstream::{abort, Switch};
use crate::error::Outcome;
use crate::sse::{error_event, Ending, Rewriter};

/// The watchdog looks this many times per idle timeout.
const TICKS_PER_TIMEOUT: u32 = 4;

/// Per-stream state shared by the transform's callbacks.
struct State {
    rewriter: Rewriter,
    /// The last read, copied out of JS memory, and what it completed (both reused).
    input: Vec<u8>,
    output: Vec<u8>,
    controller: Option<Controller>,
    trace: Trace,
    switch: Switch,
    /// Reads seen, and the watchdog's count of ticks since the last one.
    reads: u64,
    quiet_ticks: u32,
    watchdog: Option<i32>,
}

type Shared = Rc<RefCell<State>>;

/// What the stream needs besides the upstream body.
pub struct Setup {
    pub rewriter: Rewriter,
    pub trace: Trace,
    pub switch: Switch,
    pub idle_timeout: Duration,
    pub client: Option<web_sys::AbortSignal>,
}

/// `body` rewritten, as the stream to send the client.
pub fn rewrite(body: &ReadableStream, setup: Setup) -> Result<ReadableStream, JsValue> {
    let Setup { rewriter, trace, switch, idle_timeout, client } = setup;
    let state: Shared = Rc::new(RefCell::new(State {
        rewriter,
        input: Vec::new(),
        output: Vec::new(),
        controller: None,
        trace,
        switch,
        reads: 0,
        quiet_ticks: 0,
        watchdog: None,
    }));
    let transformer = Object::new();
    let callbacks = [
        ("start", start(Rc::clone(&state))),
        ("transform", transform(Rc::clone(&state))),
        ("flush", flush(Rc::clone(&state))),
        ("cancel", cancel(Rc::clone(&state))),
    ];
    for (name, callback) in callbacks {
        Reflect::set(&transformer, &name.into(), &callback)?;
    }
    if let Some(client) = client {
        let gone = Rc::clone(&state);
        let on_abort = Closure::<dyn FnMut()>::new(move || end(&gone, Outcome::ClientGone));
        client.set_onabort(Some(on_abort.into_js_value().unchecked_ref()));
    }
    arm_watchdog(&state, idle_timeout)?;
    let stream = TransformStream::new_with_transformer(&transformer)?;
    let pair = ReadableWritablePair::new(&stream.readable(), &stream.writable());
    Ok(body.pipe_through(&pair))
}

fn start(state: Shared) -> JsValue {
    Closure::<dyn FnMut(Controller)>::new(move |controller: Controller| {
        if let Ok(mut state) = state.try_borrow_mut() {
            state.controller = Some(controller);
        }
    })
    .into_js_value()
}

/// `transform(chunk, controller)`: rewrite one read; end the stream if the rewriter gives up.
fn transform(shared: Shared) -> JsValue {
    let callback = move |chunk: JsValue, controller: Controller| {
        let chunk: Uint8Array = chunk.dyn_into()?;
        let open = {
            let mut guard = shared.try_borrow_mut().map_err(|_| busy())?;
            let state = &mut *guard;
            state.reads += 1;
            state.input.resize(chunk.length() as usize, 0);
            chunk.copy_to(&mut state.input);
            state.output.clear();
            let open = state.rewriter.push(&state.input, &mut state.output);
            enqueue(&controller, state)?;
            open
        };
        if !open {
            controller.terminate();
            end(&shared, Outcome::UpstreamError);
        }
        Ok::<(), JsValue>(())
    };
    Closure::<dyn FnMut(JsValue, Controller) -> Result<(), JsValue>>::new(callback).into_js_value()
}

/// `flush(controller)`: the upstream ended; write what the last event still holds.
fn flush(shared: Shared) -> JsValue {
    let callback = move |controller: Controller| {
        let ending = {
            let mut guard = shared.try_borrow_mut().map_err(|_| busy())?;
            let state = &mut *guard;
            state.output.clear();
            let ending = state.rewriter.finish(&mut state.output);
            enqueue(&controller, state)?;
            ending
        };
        let outcome = if ending == Ending::Complete { Outcome::Ok } else { Outcome::UpstreamError };
        end(&shared, outcome);
        Ok::<(), JsValue>(())
    };
    Closure::<dyn FnMut(Controller) -> Result<(), JsValue>>::new(callback).into_js_value()
}

/// `cancel(reason)`: the client stopped reading.
fn cancel(shared: Shared) -> JsValue {
    Closure::<dyn FnMut(JsValue)>::new(move |_reason: JsValue| end(&shared, Outcome::ClientGone))
        .into_js_value()
}

fn enqueue(controller: &Controller, state: &mut State) -> Result<(), JsValue> {
    if state.output.is_empty() {
        return Ok(());
    }
    if state.trace.client_first_byte_ms.is_none() {
        state.trace.client_first_byte_ms = Some(state.trace.elapsed());
    }
    state.trace.bytes_out += state.output.len() as u64;
    controller.enqueue_with_chunk(&Uint8Array::from(state.output.as_slice()))
}

/// Ends the stream's bookkeeping once: stops the watchdog, stops the upstream unless it
/// finished by itself, and writes the log line.
fn end(shared: &Shared, outcome: Outcome) {
    let Ok(mut guard) = shared.try_borrow_mut() else {
        return;
    };
    let state = &mut *guard;
    if let Some(handle) = state.watchdog.take() {
        global().clear_interval_with_handle(handle);
    }
    if outcome != Outcome::Ok {
        abort(&state.switch);
    }
    if let Some((code, reason)) = failure(outcome) {
        state.trace.fail_in_stream(code, reason);
    }
    state.trace.usage = state.rewriter.usage();
    state.trace.finish(200, outcome);
}

/// The class and reason a stream that did not end well is logged with.
fn failure(outcome: Outcome) -> Option<(&'static str, &'static str)> {
    match outcome {
        Outcome::Ok => None,
        Outcome::ClientGone => Some(("client_gone", "the client left mid-stream")),
        Outcome::Timeout => Some(("upstream_idle_timeout", "the upstream went quiet")),
        _ => Some(("upstream_stream_broken", "the upstream stream was cut or oversized")),
    }
}

/// Checks a few times per idle timeout whether a read arrived; after a whole timeout without
/// one, ends the stream with an in-band error event the SDKs raise.
fn arm_watchdog(shared: &Shared, idle_timeout: Duration) -> Result<(), JsValue> {
    let tick_ms = (idle_timeout.as_millis() / u128::from(TICKS_PER_TIMEOUT)).max(1);
    let tick_ms = i32::try_from(tick_ms).unwrap_or(i32::MAX);
    let watched = Rc::clone(shared);
    let seen = RefCell::new(0u64);
    let tick = Closure::<dyn FnMut()>::new(move || {
        let idle = {
            let Ok(mut state) = watched.try_borrow_mut() else {
                return;
            };
            let reads = state.reads;
            if reads == seen.replace(reads) {
                state.quiet_ticks += 1;
            } else {
                state.quiet_ticks = 0;
            }
            state.quiet_ticks >= TICKS_PER_TIMEOUT
        };
        if idle {
            time_out(&watched);
        }
    });
    let function: Function = tick.into_js_value().unchecked_into();
    let handle =
        global().set_interval_with_callback_and_timeout_and_arguments_0(&function, tick_ms)?;
    if let Ok(mut state) = shared.try_borrow_mut() {
        state.watchdog = Some(handle);
    }
    Ok(())
}

fn time_out(shared: &Shared) {
    if let Ok(state) = shared.try_borrow() {
        if let Some(controller) = &state.controller {
            let event =
                error_event("the upstream sent nothing for too long", "upstream_idle_timeout");
            let _ = controller.enqueue_with_chunk(&Uint8Array::from(event.as_slice()));
            controller.terminate();
        }
    }
    end(shared, Outcome::Timeout);
}

fn global() -> WorkerGlobalScope {
    js_sys::global().unchecked_into()
}

fn busy() -> JsValue {
    JsValue::from_str("the stream state is busy")
}
