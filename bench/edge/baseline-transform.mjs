// Baseline for the edge benchmark: forwards the POST to the stub upstream and pipes the reply
// through a TransformStream whose transform only enqueues each chunk, so the isolate is entered
// once per chunk, as in the gateway, with no work done there.

export default {
  async fetch(request, env) {
    if (new URL(request.url).pathname === '/health') return new Response('ok');
    const upstream = await fetch(env.UPSTREAM_URL, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer bench' },
      body: request.body,
    });
    const identity = new TransformStream({
      transform(chunk, controller) {
        controller.enqueue(chunk);
      },
    });
    return new Response(upstream.body.pipeThrough(identity), upstream);
  },
};
