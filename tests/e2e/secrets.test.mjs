// Secrets, end to end: requests of every kind (successes, the gateway's own errors, upstream
// errors that quote the upstream key, timeouts, broken streams), and the upstream key, the
// client keys and the system prompts must appear in no response header or body, decoded or
// not, and nowhere in what the Worker logged.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { CLIENT_KEYS, RATE_LIMIT_KEY, UPSTREAM_KEY } from './harness.mjs';
import { FILES, PERSONA, chunkEvent, clientKey, requestId } from './helpers.mjs';
import { startLoggedGateway } from './battery.mjs';

const START = { timeout: 15 * 60_000 };
/** A key no instance accepts, recognisable should it be echoed. */
const WRONG_KEY = 'sk-e2e-wrong-but-real-looking-4c7a9e';
const SECRETS = [
  ['the upstream key', UPSTREAM_KEY],
  ['the wrong client key', WRONG_KEY],
  ['the rate-limit key', RATE_LIMIT_KEY],
  ...CLIENT_KEYS.map((key) => ['a client key', key]),
];
const hi = [{ role: 'user', content: 'hi' }];

/** Distinctive stretches of every system prompt: the start, middle and end of each body. */
function promptSnippets() {
  const snippets = [];
  const take = (text, label) => {
    const clean = text.trim();
    const middle = Math.floor(clean.length / 2);
    for (const part of [clean.slice(0, 80), clean.slice(middle, middle + 80), clean.slice(-80)]) {
      snippets.push([label, part]);
    }
  };
  take(FILES.shared, 'the shared prompt');
  for (const persona of FILES.personas) take(persona.body, `${persona.id}'s prompt`);
  return snippets;
}
const PROMPTS = promptSnippets();

/** Every string a JSON value holds, keys included, decoded. */
function strings(value, out = []) {
  if (typeof value === 'string') out.push(value);
  else if (Array.isArray(value)) value.forEach((item) => strings(item, out));
  else if (value && typeof value === 'object') {
    for (const [key, item] of Object.entries(value)) {
      out.push(key);
      strings(item, out);
    }
  }
  return out;
}

/** The body as text and, where it is JSON or an event stream of JSON, its decoded strings. */
function readable(text) {
  const decoded = [];
  const tryJson = (part) => {
    try {
      decoded.push(...strings(JSON.parse(part)));
    } catch {
      // Not JSON: the raw text is checked anyway.
    }
  };
  if (/^(data|:|event)/.test(text)) {
    for (const line of text.split(/\r\n|\r|\n/))
      if (line.startsWith('data:')) tryJson(line.slice(5));
  } else {
    tryJson(text);
  }
  return [text, ...decoded].join('\n');
}

/** Sends a request; asserts no secret and no prompt in its headers or body; returns it. */
async function probe(
  gw,
  label,
  pathname,
  { method = 'POST', body, headers = {}, prompts = true } = {},
) {
  const init = {
    method,
    headers: {
      authorization: `Bearer ${clientKey()}`,
      'x-request-id': requestId('secret'),
      ...headers,
    },
    signal: AbortSignal.timeout(30_000),
  };
  for (const [name, value] of Object.entries(init.headers))
    if (value === null) delete init.headers[name];
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
    init.headers['content-type'] = 'application/json';
  }
  const response = await fetch(`${gw.origin}${pathname}`, init);
  const chunks = [];
  try {
    for await (const chunk of response.body ?? []) chunks.push(Buffer.from(chunk));
  } catch {
    // A stream that broke off: what arrived is checked.
  }
  const text = Buffer.concat(chunks).toString('utf8');
  const headerText = [...response.headers].map(([k, v]) => `${k}: ${v}`).join('\n');
  const seen = readable(text);
  for (const [what, secret] of SECRETS) {
    assert.ok(!headerText.includes(secret), `${label}: ${what} in the response headers`);
    assert.ok(
      !seen.includes(secret),
      `${label}: ${what} in the response body: ${text.slice(0, 400)}`,
    );
  }
  if (prompts) {
    for (const [what, snippet] of PROMPTS) {
      assert.ok(!seen.includes(snippet), `${label}: ${what} in the response body`);
    }
  }
  return { status: response.status, text, id: init.headers['x-request-id'] };
}

const upstreamError = (message, code = 'invalid_api_key', type = 'invalid_request_error') => ({
  error: { message, type, param: null, code },
});

describe('no secret and no system prompt leaves the gateway', () => {
  let gw;
  const ids = [];
  const expect = (result, status) => {
    ids.push(result.id);
    assert.equal(result.status, status, result.text.slice(0, 300));
  };
  before(async () => {
    gw = await startLoggedGateway({
      RETRY_BASE_DELAY_MS: '10',
      UPSTREAM_FIRST_BYTE_TIMEOUT_MS: '1500',
      UPSTREAM_IDLE_TIMEOUT_MS: '1500',
    });
  }, START);
  after(() => gw?.stop());

  const chat = (label, body, options = {}) =>
    probe(gw, label, '/v1/chat/completions', {
      body: { model: PERSONA, messages: hi, ...body },
      ...options,
    });

  describe('successes', () => {
    test('a completion, streamed or not, with and without the usage chunk', async () => {
      expect(await chat('completion', {}), 200);
      expect(await chat('stream', { stream: true }), 200);
      expect(
        await chat('stream with usage', { stream: true, stream_options: { include_usage: true } }),
        200,
      );
    });

    test('the model list, every model, and /health', async () => {
      const list = await probe(gw, '/v1/models', '/v1/models', { method: 'GET' });
      expect(list, 200);
      const models = JSON.parse(list.text).data;
      assert.equal(models.length, FILES.personas.length);
      for (const model of models) {
        expect(
          await probe(gw, model.id, `/v1/models/${encodeURIComponent(model.id)}`, {
            method: 'GET',
          }),
          200,
        );
      }
      expect(
        await probe(gw, '/health', '/health', { method: 'GET', headers: { authorization: null } }),
        200,
      );
    });
  });

  describe("the gateway's own errors", () => {
    test('400s', async () => {
      expect(await probe(gw, 'invalid JSON', '/v1/chat/completions', { body: '{"model":' }), 400);
      expect(await chat('no messages', { messages: [] }), 400);
      expect(await chat('bad role', { messages: [{ role: 'wizard', content: 'x' }] }), 400);
      expect(await chat('stream not a boolean', { stream: 'yes' }), 400);
      const duplicate = `{"model":"${PERSONA}","model":"${PERSONA}","messages":[]}`;
      expect(await probe(gw, 'duplicate key', '/v1/chat/completions', { body: duplicate }), 400);
    });

    test('401s: no key, a wrong key, a key in the wrong scheme', async () => {
      expect(await chat('no key', {}, { headers: { authorization: null } }), 401);
      expect(
        await chat('wrong key', {}, { headers: { authorization: `Bearer ${WRONG_KEY}` } }),
        401,
      );
      expect(await chat('Basic', {}, { headers: { authorization: `Basic ${WRONG_KEY}` } }), 401);
      expect(
        await probe(gw, 'models, wrong key', '/v1/models', {
          method: 'GET',
          headers: { authorization: `Bearer ${WRONG_KEY}` },
        }),
        401,
      );
    });

    test('404s, 405, 413', async () => {
      expect(await chat('unknown persona', { model: 'zaguanai/nobody' }), 404);
      expect(await probe(gw, 'unknown path', '/v1/nothing', { method: 'GET' }), 404);
      expect(await probe(gw, '405', '/v1/chat/completions', { method: 'GET' }), 405);
      expect(await chat('413', { pad: 'x'.repeat(1_100_000) }), 413);
    });
  });

  describe('upstream errors, some quoting the upstream key', () => {
    const quoting = upstreamError(
      `Incorrect API key provided: ${UPSTREAM_KEY}. Check ${UPSTREAM_KEY}.`,
    );

    test('a 401 that quotes the key, streamed or not', async () => {
      for (const stream of [false, true]) {
        const result = await chat('401 quoting the key', {
          stream,
          x_stub: { status: 401, body: quoting },
        });
        expect(result, 401);
        assert.match(result.text, /\[redacted\]/);
      }
    });

    test('a 500 that quotes the key in every field, after the retries', async () => {
      const body = {
        error: {
          message: UPSTREAM_KEY,
          type: UPSTREAM_KEY,
          param: UPSTREAM_KEY,
          code: UPSTREAM_KEY,
        },
      };
      expect(await chat('500 quoting the key', { x_stub: { status: 500, body } }), 500);
    });

    test('a 429 that quotes the key, passed on at once', async () => {
      const x_stub = { status: 429, headers: { 'retry-after': '3600' }, body: quoting };
      expect(await chat('429 quoting the key', { x_stub }), 429);
    });

    test('bodies that are not OpenAI errors, quoting the key, become our 502', async () => {
      const html = `<html><body>bad key ${UPSTREAM_KEY}</body></html>`;
      expect(await chat('HTML 502', { x_stub: { status: 502, body: html } }), 502);
      expect(
        await chat('text 400', { x_stub: { status: 400, body: `key ${UPSTREAM_KEY} refused` } }),
        502,
      );
      expect(
        await chat('HTML 200', {
          x_stub: { status: 200, headers: { 'content-type': 'text/html' }, body: html },
        }),
        502,
      );
      expect(
        await chat('JSON 200 that is no completion', { x_stub: { json: [UPSTREAM_KEY] } }),
        502,
      );
    });

    test('an upstream that resets, hangs, or goes quiet mid-stream', async () => {
      expect(await chat('reset', { x_stub: { reset_before_headers: true } }), 502);
      expect(await chat('hang', { x_stub: { hang_ms: 10_000 } }), 504);
      expect(
        await chat('quiet mid-stream', {
          stream: true,
          x_stub: { stall_after: 2, stall_ms: 8000 },
        }),
        200,
      );
      const cut = { reads: [chunkEvent('Hello'), 'data: {"id":"c1","model":"up'], reset_after: 2 };
      expect(await chat('cut mid-event', { stream: true, x_stub: cut }), 200);
    });

    test('an error event mid-stream that quotes the key', async () => {
      const error = upstreamError(`provider refused key ${UPSTREAM_KEY}`, 'provider_error');
      const event = `data: ${JSON.stringify(error)}\n\n`;
      const reads = [chunkEvent('Hel'), event];
      expect(await chat('in-band error quoting the key', { stream: true, x_stub: { reads } }), 200);
    });

    test('a 401 that quotes the key with JSON escapes', async () => {
      const escaped = UPSTREAM_KEY.replaceAll('-', '\\u002d');
      const body =
        `{"error":{"message":"Incorrect API key provided: ${escaped}",` +
        '"type":"invalid_request_error","param":null,"code":"invalid_api_key"}}';
      expect(await chat('401 quoting the escaped key', { x_stub: { status: 401, body } }), 401);
    });
  });

  test('the Worker logged no key and no prompt, and logged every request', async () => {
    for (const id of ids) assert.ok(await gw.lineFor(id, 5000), `no log line for ${id}`);
    const log = gw.log();
    for (const [what, secret] of SECRETS) assert.ok(!log.includes(secret), `the log holds ${what}`);
    for (const [what, snippet] of PROMPTS)
      assert.ok(!log.includes(snippet), `the log holds ${what}`);
  });
});
