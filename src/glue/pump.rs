//! The streaming path: a small JavaScript loop (`pump.js`) reads the upstream body and writes
//! into workerd's native `IdentityTransformStream`, calling into the wasm once per read to
//! rewrite it. The loop is JavaScript because entering the isolate per chunk is the cost that
//! matters at the edge, and this design enters it least (see the README's Performance). This
//! side keeps the rewriter and the request's trace, and ends both when the loop says so.

use std::time::Duration;

use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::JsValue;
use web_sys::ReadableStream;

use super::observe::Trace;
use super::upstream::{abort, Switch};
use crate::error::Outcome;
use crate::sse::{error_event, Ending, Rewriter};

/// The watchdog looks this many times per idle timeout.
const TICKS_PER_TIMEOUT: u32 = 4;

#[wasm_bindgen(module = "/src/glue/pump.js")]
extern "C" {
    fn pipe_rewritten(
        body: &ReadableStream,
        job: Job,
        client: Option<web_sys::AbortSignal>,
        ctx: &JsValue,
        tick_ms: u32,
        ticks: u32,
    ) -> ReadableStream;
}

/// One stream's rewriting and bookkeeping, driven by the JavaScript loop above.
#[wasm_bindgen]
pub struct Job {
    rewriter: Rewriter,
    output: Vec<u8>,
    ending: Ending,
    trace: Trace,
    switch: Switch,
    done: bool,
}

/// What the stream needs besides the upstream body.
pub struct Setup {
    pub rewriter: Rewriter,
    pub trace: Trace,
    pub switch: Switch,
    pub idle_timeout: Duration,
    /// The client's abort signal, to tell a client that left from an upstream that broke.
    pub client: Option<web_sys::AbortSignal>,
    /// The request's execution context, which the loop keeps alive until it ends.
    pub context: JsValue,
}

/// `body` rewritten, as the stream to send the client.
pub fn rewrite(body: &ReadableStream, setup: Setup) -> ReadableStream {
    let Setup { rewriter, trace, switch, idle_timeout, client, context } = setup;
    let job =
        Job { rewriter, output: Vec::new(), ending: Ending::Complete, trace, switch, done: false };
    let tick = idle_timeout.as_millis() / u128::from(TICKS_PER_TIMEOUT);
    let tick = u32::try_from(tick.max(1)).unwrap_or(u32::MAX);
    pipe_rewritten(body, job, client, &context, tick, TICKS_PER_TIMEOUT)
}

#[wasm_bindgen]
impl Job {
    /// Rewrites one upstream read; `undefined` when it completed no event.
    pub fn push(&mut self, chunk: &[u8]) -> Option<Vec<u8>> {
        self.output.clear();
        self.rewriter.push(chunk, &mut self.output);
        self.take_output()
    }

    /// Whether the stream may go on (false once an event outgrew the bound).
    pub fn is_open(&self) -> bool {
        self.rewriter.is_open()
    }

    /// What the last event still holds, at the upstream's end.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        self.output.clear();
        self.ending = self.rewriter.finish(&mut self.output);
        self.take_output()
    }

    /// How the stream ended, in the loop's numbering: 0 well, 1 broken.
    pub fn ending(&self) -> u8 {
        u8::from(self.ending != Ending::Complete)
    }

    /// The in-band event that tells the client why the stream ends early: the upstream went
    /// quiet (2) or broke off (1).
    pub fn error_event(&mut self, ending: u8) -> Vec<u8> {
        let event = if ending == 2 {
            error_event("the upstream sent nothing for too long", "upstream_idle_timeout")
        } else {
            error_event("upstream stream ended before completion", "upstream_truncated")
        };
        self.trace.bytes_out += event.len() as u64;
        event
    }

    /// Ends the bookkeeping once: stops the upstream unless it finished, writes the log line.
    pub fn end(&mut self, ending: u8) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let (outcome, failure) = match ending {
            0 => (Outcome::Ok, None),
            2 => (Outcome::Timeout, Some(("upstream_idle_timeout", "the upstream went quiet"))),
            3 => (Outcome::ClientGone, Some(("client_gone", "the client left mid-stream"))),
            _ => (
                Outcome::UpstreamError,
                Some(("upstream_stream_broken", "cut, reset or oversized")),
            ),
        };
        if let Some((class, reason)) = failure {
            abort(&self.switch);
            self.trace.note_failure(class, reason);
        }
        self.trace.usage = self.rewriter.usage();
        self.trace.finish(200, outcome);
    }

    fn take_output(&mut self) -> Option<Vec<u8>> {
        if self.output.is_empty() {
            return None;
        }
        if self.trace.client_first_byte_ms.is_none() {
            self.trace.client_first_byte_ms = Some(self.trace.elapsed());
        }
        self.trace.bytes_out += self.output.len() as u64;
        Some(std::mem::take(&mut self.output))
    }
}
