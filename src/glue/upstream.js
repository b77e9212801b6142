// One POST to the upstream. The timers live here, in JavaScript, so that waiting costs the wasm
// no closure and no crossing; `controller` also aborts the body later (the client left, the
// stream went idle). Resolves to [response, body]: `body` is the whole body as bytes, read here,
// unless the answer is a successful event stream, whose body is left to stream.
export async function post(url, authorization, requestId, body, stream, timeouts, controller) {
  const [firstByteMs, idleMs] = timeouts;
  const timeOut = () => controller.abort(new DOMException('the upstream took too long', 'TimeoutError'));
  let timer = setTimeout(timeOut, firstByteMs);
  try {
    const response = await fetch(url, {
      method: 'POST',
      // A redirect would carry the persona's prompt to another origin: never follow one.
      redirect: 'manual',
      headers: {
        authorization,
        'content-type': 'application/json',
        accept: stream ? 'text/event-stream' : 'application/json',
        'x-request-id': requestId,
        'user-agent': 'persona-gateway',
      },
      // A copy: the argument is a view into the wasm memory, which may move.
      body: body.slice(),
      signal: controller.signal,
    });
    clearTimeout(timer);
    const eventStream = (response.headers.get('content-type') ?? '').startsWith('text/event-stream');
    if (stream && response.ok && eventStream) return [response, undefined];
    // A whole body must arrive within the idle timeout too, or the client would wait forever.
    timer = setTimeout(timeOut, idleMs);
    return [response, new Uint8Array(await response.arrayBuffer())];
  } finally {
    clearTimeout(timer);
  }
}
