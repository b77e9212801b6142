// Baseline for the edge benchmark: forwards the POST to the stub upstream and returns the
// upstream's body untouched, so workerd pipes it natively without entering the isolate per chunk.

export default {
  async fetch(request, env) {
    if (new URL(request.url).pathname === '/health') return new Response('ok');
    const upstream = await fetch(env.UPSTREAM_URL, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer bench' },
      body: request.body,
    });
    return new Response(upstream.body, upstream);
  },
};
