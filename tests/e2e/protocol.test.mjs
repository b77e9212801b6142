// Request ids, client keys, limits and the gateway's own errors, checked with plain HTTP.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CLIENT_KEYS, RATE_LIMIT_KEY, ROOT, gateway, release, UPSTREAM_KEY } from './harness.mjs';
import {
  PERSONA,
  assertOpenAIError,
  assertSaneId,
  chat,
  clientKey,
  requestId,
  send,
  theUpstreamRequest,
  upstreamSaw,
} from './helpers.mjs';

let gw;
before(async () => {
  gw = await gateway();
});
after(release);

const hi = [{ role: 'user', content: 'hi' }];

/** A request through node:http, which lets a header hold a tab or latin-1 bytes. */
function rawRequest(pathname, headers, body) {
  return new Promise((resolve, reject) => {
    const url = new URL(`${gw.origin}${pathname}`);
    const request = http.request(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname,
        method: 'POST',
        headers,
        timeout: 30_000,
      },
      (response) => {
        const chunks = [];
        response.on('data', (c) => chunks.push(c));
        response.on('end', () =>
          resolve({
            status: response.statusCode,
            headers: response.headers,
            text: Buffer.concat(chunks).toString(),
          }),
        );
      },
    );
    request.on('timeout', () => request.destroy(new Error('timeout')));
    request.on('error', reject);
    request.end(body);
  });
}

describe('x-request-id', () => {
  test('a sane client id is echoed and sent upstream', async () => {
    const id = `${requestId('sane')}:/=+. ~`;
    const result = await chat(gw, { model: PERSONA, messages: hi }, { id });
    assert.equal(result.status, 200);
    assert.equal(result.headers.get('x-request-id'), id);
    const seen = await theUpstreamRequest(gw, id);
    assert.equal(seen.headers['x-request-id'], id);
  });

  test('an id of exactly 128 bytes is kept', async () => {
    const id = requestId('long').padEnd(128, 'x');
    const result = await chat(gw, { model: PERSONA, messages: hi }, { id });
    assert.equal(result.headers.get('x-request-id'), id);
  });

  test('a 200-byte id is replaced by a generated one, which goes upstream', async () => {
    const id = requestId('too-long').padEnd(200, 'y');
    const result = await chat(gw, { model: PERSONA, messages: hi }, { id });
    assert.equal(result.status, 200);
    const got = result.headers.get('x-request-id');
    assertSaneId(got);
    assert.notEqual(got, id);
    assert.deepEqual(await upstreamSaw(gw, id), []);
    const seen = await theUpstreamRequest(gw, got);
    assert.equal(seen.headers['x-request-id'], got);
  });

  for (const [label, bad] of [
    ['a control character (tab)', 'bad\tid'],
    ['a non-ASCII byte', 'caf\u00e9-id'],
  ]) {
    test(`an id with ${label} is replaced by a generated one`, async () => {
      const id = `${requestId('ctl')}-${bad}`;
      const result = await rawRequest(
        '/v1/chat/completions',
        {
          'content-type': 'application/json',
          'x-request-id': id,
          authorization: `Bearer ${clientKey()}`,
        },
        JSON.stringify({ model: PERSONA, messages: hi }),
      );
      assert.equal(result.status, 200, result.text);
      const got = result.headers['x-request-id'];
      assertSaneId(got);
      assert.notEqual(got, id);
      await theUpstreamRequest(gw, got);
    });
  }

  test('errors get a generated id too, a different one each time', async () => {
    const cases = [
      () => send(gw, '/v1/nothing-here', { method: 'GET' }),
      () => send(gw, '/v1/chat/completions', { method: 'GET' }),
      () => chat(gw, '{not json'),
      () => chat(gw, { model: 'zaguanai/nobody', messages: hi }),
    ];
    const ids = new Set();
    for (const make of cases) {
      const result = await make();
      assert.ok(result.status >= 400, `status ${result.status}`);
      const got = result.headers.get('x-request-id');
      assertSaneId(got);
      ids.add(got);
    }
    assert.equal(ids.size, cases.length, 'each request gets its own id');
  });

  test("a client's id is echoed on errors", async () => {
    const id = requestId('err-echo');
    const result = await chat(gw, { model: 'zaguanai/nobody', messages: hi }, { id });
    assert.equal(result.status, 404);
    assert.equal(result.headers.get('x-request-id'), id);
  });
});

describe("the gateway's own errors", () => {
  test('invalid JSON is 400 invalid_request_error', async () => {
    const id = requestId('bad-json');
    const result = await chat(gw, '{"model": "zaguanai/socrates", "messages": [', { id });
    assertOpenAIError(result, 400, { type: 'invalid_request_error' });
    assert.deepEqual(await upstreamSaw(gw, id), []);
  });

  test('a JSON body that is not an object is 400', async () => {
    assertOpenAIError(await chat(gw, '[1, 2]'), 400, { type: 'invalid_request_error' });
  });

  for (const [label, body] of [
    ['missing', { model: PERSONA }],
    ['empty', { model: PERSONA, messages: [] }],
    ['not an array', { model: PERSONA, messages: 'hi' }],
  ]) {
    test(`messages ${label} is 400 with param "messages"`, async () => {
      const id = requestId('bad-messages');
      const result = await chat(gw, body, { id });
      assertOpenAIError(result, 400, { param: 'messages', type: 'invalid_request_error' });
      assert.deepEqual(await upstreamSaw(gw, id), []);
    });
  }

  test('model missing is 400 with param "model"', async () => {
    assertOpenAIError(await chat(gw, { messages: hi }), 400, {
      param: 'model',
      type: 'invalid_request_error',
    });
  });

  test('an unknown model is 404 model_not_found', async () => {
    for (const model of ['zaguanai/nobody', 'openai/gpt-4o', 'nobody']) {
      assertOpenAIError(await chat(gw, { model, messages: hi }), 404, { code: 'model_not_found' });
    }
  });

  test('GET /v1/chat/completions is 405', async () => {
    assertOpenAIError(await send(gw, '/v1/chat/completions', { method: 'GET' }), 405);
  });

  test('POST /v1/models is 405', async () => {
    assertOpenAIError(await send(gw, '/v1/models', { method: 'POST', body: {} }), 405);
  });

  test('an unknown path is 404', async () => {
    for (const pathname of ['/v1/nothing-here', '/', '/v2/chat/completions']) {
      assertOpenAIError(await send(gw, pathname, { method: 'GET' }), 404);
    }
  });

  test('GET /health is 200 {"status":"ok"}', async () => {
    const result = await send(gw, '/health', { method: 'GET' });
    assert.equal(result.status, 200);
    assert.deepEqual(JSON.parse(result.text), { status: 'ok' });
  });
});

describe('upstream failures', () => {
  test('an upstream error that echoes the key does not pass the key on', async () => {
    const body = JSON.stringify({
      error: {
        message: `Incorrect API key provided: ${UPSTREAM_KEY}.`,
        type: 'invalid_request_error',
        param: null,
        code: 'invalid_api_key',
      },
    });
    for (const stream of [false, true]) {
      // send() itself fails the test if the key appears in the headers or the body.
      const result = await chat(gw, {
        model: PERSONA,
        messages: hi,
        stream,
        x_stub: { status: 401, body },
      });
      assertOpenAIError(result, 401, { code: 'invalid_api_key' });
    }
  });

  test('an upstream that resets before answering is a 502 JSON error', async () => {
    for (const stream of [false, true]) {
      const result = await chat(gw, {
        model: PERSONA,
        messages: hi,
        stream,
        x_stub: { reads: [], reset_after: 0 },
      });
      assertOpenAIError(result, 502);
    }
  });

  test('an upstream 200 that is not JSON is never passed on as HTML', async () => {
    const html = '<html><body>maintenance</body></html>';
    const result = await chat(gw, {
      model: PERSONA,
      messages: hi,
      x_stub: { status: 200, headers: { 'content-type': 'text/html' }, body: html },
    });
    assert.ok(result.status >= 500, `status ${result.status}`);
    assertOpenAIError(result, result.status);
  });
});

describe('client keys and limits', () => {
  test('no client key is 401 invalid_api_key, and nothing goes upstream', async () => {
    const id = requestId('no-key');
    const result = await chat(
      gw,
      { model: PERSONA, messages: hi },
      { id, headers: { authorization: null } },
    );
    assertOpenAIError(result, 401, { code: 'invalid_api_key' });
    assert.equal(result.headers.get('x-request-id'), id);
    assert.deepEqual(await upstreamSaw(gw, id), []);
  });

  test('a wrong client key is 401 invalid_api_key', async () => {
    for (const authorization of [
      'Bearer sk-not-a-key-of-this-gateway',
      `Basic ${CLIENT_KEYS[0]}`,
      'Bearer',
    ]) {
      const id = requestId('bad-key');
      const result = await chat(
        gw,
        { model: PERSONA, messages: hi },
        { id, headers: { authorization } },
      );
      assertOpenAIError(result, 401, { code: 'invalid_api_key' });
      assert.deepEqual(await upstreamSaw(gw, id), []);
    }
  });

  test("the client's key never reaches the upstream", async () => {
    const id = requestId('key-upstream');
    const key = CLIENT_KEYS[5];
    const result = await chat(
      gw,
      { model: PERSONA, messages: hi },
      { id, headers: { authorization: `bearer ${key}` } },
    );
    assert.equal(result.status, 200, 'the scheme is case-insensitive');
    const seen = await theUpstreamRequest(gw, id);
    assert.equal(seen.headers.authorization, `Bearer ${UPSTREAM_KEY}`);
    assert.ok(!JSON.stringify(seen).includes(key));
  });

  test('GET /health needs no key', async () => {
    const result = await send(gw, '/health', { method: 'GET', headers: { authorization: null } });
    assert.equal(result.status, 200);
  });

  test('a request body over the limit is 413', async () => {
    const big = 'z'.repeat(1_100_000);
    const id = requestId('too-big');
    const result = await chat(
      gw,
      { model: PERSONA, messages: [{ role: 'user', content: big }] },
      { id },
    );
    assertOpenAIError(result, 413);
    assert.deepEqual(await upstreamSaw(gw, id), []);
  });

  test('a key past its rate limit gets 429 with retry-after; other keys go on', async () => {
    const limit = Number(
      /simple\s*=\s*\{\s*limit\s*=\s*(\d+)/.exec(
        fs.readFileSync(path.join(ROOT, 'wrangler.toml'), 'utf8'),
      )?.[1],
    );
    assert.ok(limit > 0, 'wrangler.toml sets a rate limit');
    const headers = { authorization: `Bearer ${RATE_LIMIT_KEY}` };
    let limited = null;
    let sent = 0;
    while (sent < limit + 20 && limited === null) {
      const batch = await Promise.all(
        Array.from({ length: 10 }, () => send(gw, '/v1/models', { method: 'GET', headers })),
      );
      sent += batch.length;
      limited = batch.find((r) => r.status === 429) ?? null;
      for (const r of batch) assert.ok([200, 429].includes(r.status), `status ${r.status}`);
    }
    assert.ok(limited, `no 429 after ${sent} requests (limit ${limit})`);
    assert.ok(sent > limit / 2, `limited after only ${sent} requests`);
    assertOpenAIError(limited, 429, { code: 'rate_limit_exceeded' });
    assert.match(limited.headers.get('retry-after') ?? '', /^\d+$/);
    const other = await send(gw, '/v1/models', { method: 'GET' });
    assert.equal(other.status, 200, 'another key is not limited');
  });
});
