// The PERSONAS namespace for the benchmark's workerd: a service that answers the requests a
// `kvNamespace` binding makes for `get` (GET /<key>, the key URL-encoded) from the records the
// harness embeds as the JSON module `records.json` ([{key, value}], as `personas sync` writes).

import records from 'records.json';

const values = new Map(records.map(({ key, value }) => [key, value]));

export default {
  async fetch(request) {
    if (request.method !== 'GET') return new Response('only get is served', { status: 405 });
    const key = decodeURIComponent(new URL(request.url).pathname.slice(1));
    const value = values.get(key);
    if (value === undefined) return new Response('Not Found', { status: 404 });
    return new Response(value);
  },
};
