//! The streaming path: a small JavaScript loop reads the upstream body and writes into
//! workerd's native `IdentityTransformStream`, calling into the wasm once per read to rewrite
//! it. Waiting on each write carries the client's backpressure to the upstream; a failed write
//! (the client left) cancels the upstream read, and a watchdog ends a stream whose upstream
//! goes quiet. The loop is JavaScript because entering the isolate once per chunk is the cost
//! that matters at the edge, and this design enters it least (see the README's Performance).

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

#[wasm_bindgen(inline_js = r#"
const OK = 0, BROKEN = 1, TIMEOUT = 2, GONE = 3;

export function pipe_rewritten(body, job, client, ctx, tickMs, ticks) {
  const { readable, writable } = new IdentityTransformStream();
  const reader = body.getReader();
  const writer = writable.getWriter();
  let reads = 0, seen = 0, quiet = 0, ending = null;
  // The client leaving cancels the readable side, which errors the writer at once.
  writer.closed.catch(() => {
    if (ending !== null) return;
    ending = GONE;
    reader.cancel().catch(() => {});
  });
  const watchdog = setInterval(() => {
    if (reads !== seen) { seen = reads; quiet = 0; return; }
    if (++quiet < ticks || ending !== null) return;
    ending = TIMEOUT;
    reader.cancel().catch(() => {});
  }, tickMs);
  const pumping = (async () => {
    try {
      for (;;) {
        let step;
        try { step = await reader.read(); } catch { ending ??= client?.aborted ? GONE : BROKEN; break; }
        if (step.done || ending !== null) break;
        reads++;
        const out = job.push(step.value);
        if (out !== undefined) await writer.write(out);
        if (!job.is_open()) { ending = BROKEN; break; }
      }
      if (ending === null) {
        const tail = job.finish();
        if (tail !== undefined) await writer.write(tail);
        ending = job.ending();
      } else if (ending === TIMEOUT) {
        await writer.write(job.idle_error());
      }
      if (ending === BROKEN && job.is_open()) {
        await writer.abort(new Error("upstream stream broke off"));
      } else {
        await writer.close();
      }
    } catch {
      ending = GONE;
    } finally {
      clearInterval(watchdog);
      if (ending !== OK) reader.cancel().catch(() => {});
      job.end(ending ?? GONE);
      job.free();
    }
  })();
  // Keeps the request alive until the loop ends, even after the client left, so that the
  // upstream is cancelled and the log line written.
  ctx.waitUntil(pumping);
  return readable;
}
"#)]
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

    /// The in-band event that tells the client the upstream went quiet.
    pub fn idle_error(&mut self) -> Vec<u8> {
        let event = error_event("the upstream sent nothing for too long", "upstream_idle_timeout");
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
            self.trace.fail_in_stream(class, reason);
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
