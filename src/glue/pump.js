// The streaming loop: reads the upstream body, hands each read to the wasm `job` to rewrite,
// and writes what it returns into workerd's native IdentityTransformStream, whose readable
// side is the client's response. Awaiting each write carries the client's backpressure back
// to the upstream. The isolate is entered once per read, by `job.push`.

const OK = 0;
const BROKEN = 1;
const TIMEOUT = 2;
const GONE = 3;

export function pipe_rewritten(body, job, client, ctx, tickMs, ticks) {
  const { readable, writable } = new IdentityTransformStream();
  const reader = body.getReader();
  const writer = writable.getWriter();
  let reads = 0;
  let ending = null;

  // Counts the watchdog's ticks without a read; after a whole idle timeout, ends the stream.
  let seen = 0;
  let quiet = 0;
  const watchdog = setInterval(() => {
    if (reads !== seen) {
      seen = reads;
      quiet = 0;
      return;
    }
    if (++quiet < ticks || ending !== null) return;
    ending = TIMEOUT;
    reader.cancel().catch(() => {});
  }, tickMs);

  const pumping = (async () => {
    try {
      for (;;) {
        let step;
        try {
          step = await reader.read();
        } catch {
          ending ??= client?.aborted ? GONE : BROKEN;
          break;
        }
        if (step.done || ending !== null) break;
        reads++;
        const out = job.push(step.value);
        if (out !== undefined) await writer.write(out);
        if (!job.is_open()) {
          ending = BROKEN;
          break;
        }
      }
      if (ending === null) {
        const tail = job.finish();
        if (tail !== undefined) await writer.write(tail);
        ending = job.ending();
      } else if (ending === TIMEOUT || (ending === BROKEN && job.is_open())) {
        // An aborted response looks like a clean end to many clients: say it in-band.
        await writer.write(job.error_event(ending));
      }
      await writer.close();
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
