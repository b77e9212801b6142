// One POST to the upstream, given up when its response headers take longer than `timeoutMs`.
// The timer lives here, in JavaScript, so that waiting costs the wasm no closure and no
// crossing; `controller` also aborts the body later (the client left, the stream went idle).
export async function post(url, authorization, requestId, body, accept, timeoutMs, controller) {
  const timer = setTimeout(
    () => controller.abort(new DOMException('no response headers in time', 'TimeoutError')),
    timeoutMs,
  );
  try {
    return await fetch(url, {
      method: 'POST',
      // A redirect would carry the persona's prompt to another origin: never follow one.
      redirect: 'manual',
      headers: {
        authorization,
        'content-type': 'application/json',
        accept,
        'x-request-id': requestId,
        'user-agent': 'persona-gateway',
      },
      // A copy: the argument is a view into the wasm memory, which may move.
      body: body.slice(),
      signal: controller.signal,
    });
  } finally {
    clearTimeout(timer);
  }
}
