//! The streaming transform: the upstream body piped through a `TransformStream` whose transform
//! is the core's [`Rewriter`]. Each upstream read is rewritten and enqueued as it arrives; the
//! pipe carries backpressure forward and cancellation back to the upstream fetch.

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{ReadableStream, ReadableWritablePair, TransformStream, TransformStreamDefaultController};
use worker::js_sys::{Object, Reflect, Uint8Array};

use crate::sse::Rewriter;

/// Per-stream state shared by the transform's callbacks.
struct State {
    rewriter: Rewriter,
    /// The last read, copied out of JS memory (reused between reads).
    input: Vec<u8>,
    /// What the last read completed (reused between reads).
    output: Vec<u8>,
}

type Shared = Rc<RefCell<State>>;

/// `body` with every event's top-level `model` set to `persona_id`.
pub fn rewrite(body: &ReadableStream, persona_id: &str) -> Result<ReadableStream, JsValue> {
    let state: Shared = Rc::new(RefCell::new(State {
        rewriter: Rewriter::new(persona_id),
        input: Vec::new(),
        output: Vec::new(),
    }));
    let transformer = Object::new();
    Reflect::set(&transformer, &"transform".into(), &transform(Rc::clone(&state)))?;
    Reflect::set(&transformer, &"flush".into(), &flush(state))?;
    let stream = TransformStream::new_with_transformer(&transformer)?;
    let pair = ReadableWritablePair::new(&stream.readable(), &stream.writable());
    Ok(body.pipe_through(&pair))
}

/// `transform(chunk, controller)`: rewrite one read; end the stream when the rewriter gives up.
fn transform(state: Shared) -> JsValue {
    let callback = move |chunk: JsValue, controller: TransformStreamDefaultController| {
        let chunk: Uint8Array = chunk.dyn_into()?;
        let mut state = state.try_borrow_mut().map_err(|_| JsValue::from_str("re-entered"))?;
        let State { rewriter, input, output } = &mut *state;
        input.resize(chunk.length() as usize, 0);
        chunk.copy_to(input);
        output.clear();
        let open = rewriter.push(input, output);
        enqueue(&controller, output)?;
        if !open {
            controller.terminate();
        }
        Ok::<(), JsValue>(())
    };
    Closure::<dyn FnMut(JsValue, TransformStreamDefaultController) -> Result<(), JsValue>>::new(
        callback,
    )
    .into_js_value()
}

/// `flush(controller)`: the upstream ended; write what the last event still holds.
fn flush(state: Shared) -> JsValue {
    let callback = move |controller: TransformStreamDefaultController| {
        let mut state = state.try_borrow_mut().map_err(|_| JsValue::from_str("re-entered"))?;
        let State { rewriter, output, .. } = &mut *state;
        output.clear();
        rewriter.finish(output);
        enqueue(&controller, output)
    };
    Closure::<dyn FnMut(TransformStreamDefaultController) -> Result<(), JsValue>>::new(callback)
        .into_js_value()
}

fn enqueue(controller: &TransformStreamDefaultController, bytes: &[u8]) -> Result<(), JsValue> {
    if bytes.is_empty() {
        return Ok(());
    }
    controller.enqueue_with_chunk(&Uint8Array::from(bytes))
}
