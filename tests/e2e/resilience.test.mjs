// Upstream resilience end to end: retries, timeouts, cancellation and compressed bodies, each
// fault injected by the stub (`x_stub`, see tests/stub/upstream.mjs) and met by the built Worker
// in workerd with short retry and timeout vars. One named test per fault mode; each checks the
// status, the body, the headers, the attempts the stub saw and their request ids.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { freePort, startGateway } from './harness.mjs';
import {
  PERSONA,
  SOCRATES,
  assertOpenAIError,
  chat,
  chunkEvent,
  clientKey,
  r0,
  requestId,
  sdk,
} from './helpers.mjs';
import {
  HAVE_PYTHON,
  closedByGateway,
  decodedBody,
  logLine,
  pythonStream,
  rawChat,
  sleep,
  stubRecords,
} from './resilience-tools.mjs';
import { assertFaithful, decodeEvents } from './sse.mjs';

const ATTEMPTS = 3;
const FIRST_BYTE_TIMEOUT_MS = 1500;
const IDLE_TIMEOUT_MS = 1000;
const VARS = {
  RETRY_MAX_ATTEMPTS: String(ATTEMPTS),
  RETRY_BASE_DELAY_MS: '20',
  RETRY_MAX_DELAY_MS: '2000',
  RETRY_BUDGET_MS: '5000',
  UPSTREAM_FIRST_BYTE_TIMEOUT_MS: String(FIRST_BYTE_TIMEOUT_MS),
  UPSTREAM_IDLE_TIMEOUT_MS: String(IDLE_TIMEOUT_MS),
  LOG_LEVEL: 'info',
};
const START_MS = 10 * 60_000;
// The Worker's console.log lines (outcome ok) show from wrangler's `log` level on; failures
// (console.warn, console.error) show at the default `warn` too.
process.env.E2E_WRANGLER_LOG_LEVEL ??= 'log';
const OK_LINES_SHOWN = ['log', 'debug'].includes(process.env.E2E_WRANGLER_LOG_LEVEL);
const UPSTREAM_MODEL = SOCRATES.header.upstream_model;

let gw;
let client;
before(
  async () => {
    gw = await startGateway({ vars: VARS });
    client = sdk(gw);
  },
  { timeout: START_MS },
);
after(async () => {
  await gw?.stop();
});

/** Chat with this request id; checks the answer carries it back. */
async function ask(tag, xStub, extra = {}) {
  const id = requestId(tag);
  const result = await chat(gw, r0(xStub, extra), { id });
  assert.equal(result.headers.get('x-request-id'), id, 'the answer carries the request id');
  return { ...result, id };
}

/** The stub's attempts for `id`: exactly `count`, every one with that same x-request-id. */
async function assertAttempts(id, count) {
  await stubRecords(gw, id, (seen) => seen.length >= count);
  // Give a wrongful extra attempt the time to show.
  await sleep(150);
  const settled = await stubRecords(gw, id);
  assert.equal(settled.length, count, `the stub saw ${count} attempt(s) for ${id}`);
  settled.forEach((record, i) => {
    assert.equal(record.headers['x-request-id'], id, `attempt ${i + 1} has the same request id`);
    assert.equal(record.attempt, i + 1);
    assert.equal(record.body, settled[0].body, `attempt ${i + 1} sends the same body`);
  });
  return settled;
}

/** The last attempt's bytes as the stub sent them. */
const sentBy = (record) => Buffer.from(record.sent_b64, 'base64').toString('utf8');

/** A completion as the stub sent it, with the gateway's only change applied. */
function withPersona(text) {
  return text.replace(`"model":${JSON.stringify(UPSTREAM_MODEL)}`, `"model":"${PERSONA}"`);
}

/** Checks a 200 stream that ended with [DONE] and is faithful to what the stub sent. */
function assertWholeStream(result, record) {
  assert.equal(result.status, 200, result.text.slice(0, 300));
  assert.equal(result.error, null, `the stream ended abnormally: ${result.error}`);
  assert.match(result.headers.get('content-type') ?? '', /^text\/event-stream/);
  const events = decodeEvents(result.text);
  assert.equal(events.at(-1)?.data, '[DONE]', 'the stream ends with [DONE]');
  assertFaithful(sentBy(record), result.text, PERSONA);
}

/** The in-band error event that ends a broken stream, after the chunks sent before it. */
function assertEndsInBand(result, code, contents) {
  assert.equal(result.status, 200);
  const events = decodeEvents(result.text);
  const last = events.at(-1);
  assert.ok(last, `some events: ${result.text}`);
  const error = JSON.parse(last.data).error;
  assert.ok(error, `the last event is an error: ${last.data}`);
  assert.equal(error.code, code);
  assert.equal(typeof error.message, 'string');
  assert.ok(!events.some((e) => e.data === '[DONE]'), 'no [DONE] for a broken stream');
  const seen = events.slice(0, -1).map((e) => JSON.parse(e.data).choices[0].delta.content);
  assert.deepEqual(seen, contents, 'every chunk sent before the failure, in order');
}

/** Checks the gateway's one log line for a request (lines of success only if shown). */
async function assertLogged(id, expected) {
  const line = await logLine(gw, id);
  if (line === null && expected.outcome === 'ok' && !OK_LINES_SHOWN) return;
  assert.ok(line, `a log line for ${id}`);
  for (const [key, value] of Object.entries(expected)) {
    assert.equal(line[key], value, `log ${key} (${JSON.stringify(line)})`);
  }
}

const stubError = (message, type, code, param = null) =>
  JSON.stringify({ error: { message, type, param, code } });

/** A short non-streamed completion, as JSON text. */
function smallCompletion(content) {
  const message = { role: 'assistant', content };
  return JSON.stringify({
    id: 'chatcmpl-small',
    object: 'chat.completion',
    created: 1,
    model: 'up-model',
    choices: [{ index: 0, message, finish_reason: 'stop' }],
  });
}

describe('retries before the first byte', () => {
  test('503 for the first two attempts, then success (not streamed)', async () => {
    const result = await ask('retry-json', { fail_first: { count: 2, status: 503 } }, {
      stream: false,
    });
    assert.equal(result.status, 200, result.text);
    const records = await assertAttempts(result.id, 3);
    assert.equal(result.text, withPersona(sentBy(records[2])), 'the answer, byte for byte');
    assert.equal(JSON.parse(result.text).model, PERSONA);
    await assertLogged(result.id, { status: 200, outcome: 'ok', attempts: 3 });
  });

  for (const status of [500, 502, 503, 504, 529]) {
    test(`${status} on the first attempt is retried, then the stream succeeds`, async () => {
      const result = await ask(`retry-${status}`, { fail_first: { count: 1, status } }, {
        stream_options: { include_usage: true },
      });
      const records = await assertAttempts(result.id, 2);
      assert.match(sentBy(records[0]), /fails with/, 'the first attempt failed');
      assertWholeStream(result, records[1]);
    });
  }

  test('429 with a small retry-after-ms is waited out and retried', async () => {
    const headers = { 'retry-after-ms': '400', 'x-ratelimit-remaining-requests': '0' };
    const result = await ask('retry-429-ms', { fail_first: { count: 1, status: 429, headers } }, {
      stream: false,
    });
    assert.equal(result.status, 200, result.text);
    const [first, second] = await assertAttempts(result.id, 2);
    const gap = second.received_at - first.received_at;
    assert.ok(gap >= 350, `the retry waited for retry-after-ms (${gap} ms)`);
    assert.equal(result.headers.get('retry-after-ms'), null, 'no stale advice on the success');
  });

  test('429 with retry-after in seconds, within RETRY_MAX_DELAY_MS, is honoured', async () => {
    const headers = { 'retry-after': '1' };
    const result = await ask('retry-429-s', { fail_first: { count: 1, status: 429, headers } });
    const [first, second] = await assertAttempts(result.id, 2);
    const gap = second.received_at - first.received_at;
    assert.ok(gap >= 900, `the retry waited for retry-after (${gap} ms)`);
    assert.equal(result.status, 200, result.text);
  });

  const longAdvice = {
    'retry-after and retry-after-ms': { 'retry-after': '30', 'retry-after-ms': '30000' },
    'retry-after alone': { 'retry-after': '5' },
  };
  for (const [name, advice] of Object.entries(longAdvice)) {
    test(`429 asking for more than RETRY_MAX_DELAY_MS (${name}) reaches the client`, async () => {
      const body = stubError('Rate limit reached for requests', 'requests', 'rate_limit_exceeded');
      const headers = {
        'content-type': 'application/json',
        ...advice,
        'x-ratelimit-limit-requests': '500',
        'x-ratelimit-remaining-requests': '0',
        'x-ratelimit-reset-requests': '30s',
        'x-ratelimit-remaining-tokens': '1200',
      };
      const xStub = { fail_first: { count: 1, status: 429, headers, body } };
      const result = await ask('429-long', xStub);
      assertOpenAIError(result, 429, { code: 'rate_limit_exceeded' });
      assert.equal(result.text, body, 'the upstream body, unchanged');
      for (const [name, value] of Object.entries(headers)) {
        if (name === 'content-type') continue;
        assert.equal(result.headers.get(name), value, `header ${name}`);
      }
      await assertAttempts(result.id, 1);

      const id = requestId('429-long-sdk');
      const error = await client.chat.completions
        .create(r0(xStub), { headers: { 'x-request-id': id } })
        .then(() => null, (caught) => caught);
      assert.ok(error instanceof OpenAI.RateLimitError, `RateLimitError, got ${error}`);
      assert.equal(error.code, 'rate_limit_exceeded');
      assert.equal(error.headers.get('retry-after'), advice['retry-after']);
      await assertAttempts(id, 1);
    });
  }

  const invalid = 'invalid_request_error';
  // status: [the SDK's error class, the upstream's body]
  const clientErrors = {
    400: ['BadRequestError', stubError("Invalid value for 'n'", invalid, 'invalid_value', 'n')],
    401: ['AuthenticationError', stubError('Incorrect API key.', invalid, 'invalid_api_key')],
    402: [
      'APIError',
      stubError('Insufficient credits: top up.', 'insufficient_credits', 'insufficient_credits'),
    ],
    403: [
      'PermissionDeniedError',
      stubError('This model is not in your band.', 'access_denied', 'band_access_denied'),
    ],
    404: ['NotFoundError', stubError('No such model.', invalid, 'model_not_found', 'model')],
    422: ['UnprocessableEntityError', stubError('Unprocessable.', invalid, 'unprocessable_entity')],
  };
  for (const [code, [errorClass, body]] of Object.entries(clientErrors)) {
    const status = Number(code);
    test(`${status} is never retried and passes through with its body`, async () => {
      const headers = { 'content-type': 'application/json', 'x-ratelimit-remaining-requests': '7' };
      const xStub = { fail_first: { count: 1, status, headers, body } };
      for (const stream of [true, false]) {
        const result = await ask(`pass-${status}`, xStub, { stream });
        assertOpenAIError(result, status, { code: JSON.parse(body).error.code });
        assert.equal(result.text, body, 'the upstream body, unchanged');
        assert.equal(result.headers.get('x-ratelimit-remaining-requests'), '7');
        await assertAttempts(result.id, 1);
      }

      const id = requestId(`pass-${status}-sdk`);
      const error = await client.chat.completions
        .create(r0(xStub), { headers: { 'x-request-id': id } })
        .then(() => null, (caught) => caught);
      assert.ok(error instanceof OpenAI[errorClass], `${errorClass}, got ${error}`);
      assert.equal(error.status, status);
      assert.equal(error.code, JSON.parse(body).error.code);
      await assertAttempts(id, 1);
    });
  }

  test('attempts run out: the last 503 passes through (SDK: InternalServerError)', async () => {
    const headers = { 'retry-after-ms': '10', 'x-ratelimit-remaining-requests': '0' };
    const xStub = { fail_first: { count: 10, status: 503, headers } };
    const result = await ask('exhausted', xStub);
    assertOpenAIError(result, 503, { code: 'stub_fail_first' });
    await assertAttempts(result.id, ATTEMPTS);
    assert.match(result.text, new RegExp(`attempt ${ATTEMPTS} fails`), 'the last answer');
    assert.equal(result.headers.get('retry-after-ms'), '10');
    assert.equal(result.headers.get('x-ratelimit-remaining-requests'), '0');
    await assertLogged(result.id, { status: 503, outcome: 'upstream_error', attempts: ATTEMPTS });

    const id = requestId('exhausted-sdk');
    const error = await client.chat.completions
      .create(r0(xStub), { headers: { 'x-request-id': id } })
      .then(() => null, (caught) => caught);
    assert.ok(error instanceof OpenAI.InternalServerError, `InternalServerError, got ${error}`);
    assert.equal(error.status, 503);
    assert.equal(error.requestID, id, 'the SDK sees the request id');
    await assertAttempts(id, ATTEMPTS);
  });

  test('attempts run out on 429: RateLimitError with the last body', async () => {
    const xStub = { fail_first: { count: 10, status: 429, headers: { 'retry-after-ms': '5' } } };
    const result = await ask('exhausted-429', xStub, { stream: false });
    assertOpenAIError(result, 429, { code: 'rate_limit_exceeded' });
    await assertAttempts(result.id, ATTEMPTS);
    assert.match(result.text, new RegExp(`attempt ${ATTEMPTS} fails`));

    const id = requestId('exhausted-429-sdk');
    const error = await client.chat.completions
      .create(r0(xStub, { stream: false }), { headers: { 'x-request-id': id } })
      .then(() => null, (caught) => caught);
    assert.ok(error instanceof OpenAI.RateLimitError, `RateLimitError, got ${error}`);
    await assertAttempts(id, ATTEMPTS);
  });

  test('a reset before the headers is retried, then 502 upstream_unreachable', async () => {
    const result = await ask('reset-early', { reset_before_headers: true });
    assertOpenAIError(result, 502, { code: 'upstream_unreachable' });
    const records = await assertAttempts(result.id, ATTEMPTS);
    assert.ok(records.every((r) => r.reset_at !== null), 'the stub reset every attempt');
    await assertLogged(result.id, { status: 502, outcome: 'upstream_error', attempts: ATTEMPTS });
  });

  test('a non-streamed body reset midway is retried (nothing reached the client yet)', async () => {
    const completion = smallCompletion('Whole.');
    const xStub = { raw: completion, split: 'bytes:40', fail_first: { count: 1, reset_after: 1 } };
    const result = await ask('reset-body', xStub, { stream: false });
    const records = await stubRecords(gw, result.id);
    assert.notEqual(records[0]?.reset_at, null, 'the stub reset the first attempt midway');
    assert.equal(result.status, 200, `retried to success, got ${result.status} ${result.text}`);
    assert.equal(JSON.parse(result.text).choices[0].message.content, 'Whole.');
    await assertAttempts(result.id, 2);
  });

  test('a connection reset on the first attempt only: the retry succeeds', async () => {
    const result = await ask('reset-once', { fail_first: { count: 1, reset: true } }, {
      stream_options: { include_usage: true },
    });
    const records = await assertAttempts(result.id, 2);
    assert.notEqual(records[0].reset_at, null);
    assertWholeStream(result, records[1]);
  });

  test('an HTML 502 page becomes our 502 JSON after the retries', async () => {
    const html =
      '<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>';
    const headers = { 'content-type': 'text/html' };
    const xStub = { fail_first: { count: 10, status: 502, headers, body: html } };
    const result = await ask('html-502', xStub);
    assertOpenAIError(result, 502, { code: 'upstream_error' });
    assert.ok(!result.text.includes('Bad Gateway</h1>'), 'no upstream HTML');
    await assertAttempts(result.id, ATTEMPTS);
  });

  test('an empty 503 body becomes our 502 JSON after the retries', async () => {
    const result = await ask('empty-503', { fail_first: { count: 10, status: 503, body: '' } }, {
      stream: false,
    });
    assertOpenAIError(result, 502, { code: 'upstream_error' });
    await assertAttempts(result.id, ATTEMPTS);
  });
});

describe('timeouts', () => {
  test('no headers within the first-byte timeout: 504 upstream_timeout, aborted', async () => {
    const started = Date.now();
    const result = await ask('hang', { hang_ms: 20_000 });
    const took = Date.now() - started;
    assertOpenAIError(result, 504, { code: 'upstream_timeout' });
    assert.ok(took >= FIRST_BYTE_TIMEOUT_MS - 100, `not before the timeout (${took} ms)`);
    assert.ok(took < 15_000, `well before the stub gave up (${took} ms)`);
    const record = await closedByGateway(gw, result.id);
    assert.ok(record.client_closed_at - record.received_at < 15_000, 'the fetch was aborted');
    await assertAttempts(result.id, 1);
    await assertLogged(result.id, { status: 504, outcome: 'timeout', attempts: 1 });

    const error = await client.chat.completions
      .create(r0({ hang_ms: 20_000 }, { stream: false }))
      .then(() => null, (caught) => caught);
    assert.ok(error instanceof OpenAI.InternalServerError, `a 5xx APIError, got ${error}`);
    assert.equal(error.status, 504);
    assert.equal(error.code, 'upstream_timeout');
  });

  test('a non-streamed body that stalls after its first bytes times out', async () => {
    const completion = smallCompletion('Late.');
    const stallMs = 15_000;
    const xStub = { raw: completion, split: 'bytes:40', stall_after: 1, stall_ms: stallMs };
    const started = Date.now();
    const result = await ask('stall-json', xStub, { stream: false });
    const took = Date.now() - started;
    assert.ok(took < stallMs - 3000, `answered ${took} ms after asking, within the idle timeout`);
    assertOpenAIError(result, 504);
    assert.ok(
      ['upstream_timeout', 'upstream_idle_timeout'].includes(JSON.parse(result.text).error.code),
      result.text,
    );
    const record = await closedByGateway(gw, result.id);
    assert.ok(record.client_closed_at < record.stalled_at + stallMs, 'the fetch was aborted');
    await assertLogged(result.id, { status: 504, outcome: 'timeout' });
  });

  const stalled = {
    reads: [chunkEvent('A'), chunkEvent('B'), chunkEvent('C'), 'data: [DONE]\n\n'],
    stall_after: 2,
    stall_ms: 20_000,
  };

  test('a stall mid-stream ends it with an in-band upstream_idle_timeout event', async () => {
    const result = await ask('stall', stalled);
    assertEndsInBand(result, 'upstream_idle_timeout', ['A', 'B']);
    const record = await closedByGateway(gw, result.id);
    assert.notEqual(record.stalled_at, null, 'the stub was stalling');
    assert.ok(
      record.client_closed_at - record.stalled_at < 15_000,
      'the upstream fetch was aborted long before the stall ended',
    );
    await assertAttempts(result.id, 1);
    await assertLogged(result.id, { outcome: 'timeout' });
  });

  test('a stall mid-stream: the Node SDK raises an APIError after the chunks', async () => {
    const chunks = [];
    const stream = await client.chat.completions.create(r0(stalled));
    const error = await (async () => {
      for await (const chunk of stream) chunks.push(chunk.choices[0].delta.content);
      return null;
    })().catch((caught) => caught);
    assert.ok(error instanceof OpenAI.APIError, `APIError, got ${error}`);
    assert.equal(error.code, 'upstream_idle_timeout');
    assert.deepEqual(chunks, ['A', 'B']);
  });

  test('a stall mid-stream: the Python SDK raises APIError', { skip: !HAVE_PYTHON }, async () => {
    const outcome = await pythonStream(gw, r0(stalled));
    assert.equal(outcome.is_api_error, true, JSON.stringify(outcome));
    assert.deepEqual(outcome.chunks, ['A', 'B']);
    const said = JSON.stringify(outcome.body ?? outcome.message);
    assert.match(said, /upstream_idle_timeout|sent nothing/);
  });
});

describe('failures once streaming started', () => {
  const reads = [chunkEvent('A'), chunkEvent('B'), chunkEvent('C'), 'data: [DONE]\n\n'];

  test('a reset mid-stream ends with upstream_truncated, no [DONE], no retry', async () => {
    const result = await ask('reset-mid', { reads, reset_after: 2, delay_ms: 50 });
    assertEndsInBand(result, 'upstream_truncated', ['A', 'B']);
    const [record] = await assertAttempts(result.id, 1);
    assert.notEqual(record.reset_at, null, 'the stub reset the connection');
    await assertLogged(result.id, { outcome: 'upstream_error' });

    const chunks = [];
    const again = r0({ reads, reset_after: 2, delay_ms: 50 });
    const stream = await client.chat.completions.create(again);
    const error = await (async () => {
      for await (const chunk of stream) chunks.push(chunk.choices[0].delta.content);
      return null;
    })().catch((caught) => caught);
    assert.ok(error instanceof OpenAI.APIError, `APIError, got ${error}`);
    assert.deepEqual(chunks, ['A', 'B']);
  });

  test('a stream that breaks after its first event is not retried', async () => {
    // Only the first attempt breaks: a retry would have given a whole stream.
    const xStub = { reads, delay_ms: 50, fail_first: { count: 1, reset_after: 1 } };
    const result = await ask('no-retry-mid', xStub);
    assertEndsInBand(result, 'upstream_truncated', ['A']);
    await assertAttempts(result.id, 1);
    await assertLogged(result.id, { status: 200, outcome: 'upstream_error' });
  });
});

describe('compressed upstream bodies', () => {
  for (const acceptEncoding of [undefined, 'gzip', 'identity']) {
    const asked = acceptEncoding ?? 'none';
    test(`gzip JSON: the bytes match the headers (accept-encoding: ${asked})`, async () => {
      const id = requestId('gzip-json');
      const raw = await rawChat(gw, r0({ gzip: true }, { stream: false }), { id, acceptEncoding });
      assert.equal(raw.status, 200, raw.bytes.toString());
      assert.equal(raw.headers['x-request-id'], id);
      const body = decodedBody(raw).toString('utf8');
      const [record] = await assertAttempts(id, 1);
      assert.notEqual(record.writes[0].wire_bytes, record.writes[0].bytes, 'the stub sent gzip');
      assert.equal(body, withPersona(sentBy(record)));
    });

    test(`gzip SSE: the bytes match the headers (accept-encoding: ${asked})`, async () => {
      const id = requestId('gzip-sse');
      const raw = await rawChat(
        gw,
        r0({ gzip: true }, { stream_options: { include_usage: true } }),
        { id, acceptEncoding },
      );
      assert.equal(raw.status, 200, raw.bytes.toString());
      assert.match(raw.headers['content-type'] ?? '', /^text\/event-stream/);
      const body = decodedBody(raw).toString('utf8');
      const [record] = await assertAttempts(id, 1);
      assertFaithful(sentBy(record), body, PERSONA);
      assert.equal(decodeEvents(body).at(-1).data, '[DONE]');
    });
  }

  test('a gzip error body passes decoded, with its headers and no content-encoding', async () => {
    const body = stubError('Rate limit reached', 'requests', 'rate_limit_exceeded');
    const headers = { 'content-type': 'application/json', 'retry-after': '30' };
    const id = requestId('gzip-429');
    const xStub = { status: 429, headers, body, gzip: true };
    for (const acceptEncoding of [undefined, 'gzip']) {
      const raw = await rawChat(gw, r0(xStub, { stream: false }), { id, acceptEncoding });
      assert.equal(raw.status, 429);
      assert.equal(raw.headers['retry-after'], '30');
      assert.equal(raw.headers['x-request-id'], id);
      assert.equal(decodedBody(raw).toString('utf8'), body);
    }
  });

  test('gzip SSE through fetch and the SDK: events arrive one by one', async () => {
    const reads = [chunkEvent('A'), chunkEvent('B'), chunkEvent('C'), 'data: [DONE]\n\n'];
    const result = await ask('gzip-sse-paced', { gzip: true, reads, delay_ms: 400 });
    assert.equal(result.status, 200);
    const [record] = await assertAttempts(result.id, 1);
    assertFaithful(sentBy(record), result.text, PERSONA);
    let text = '';
    let firstAt = Infinity;
    for (const read of result.reads) {
      text += read.bytes.toString('utf8');
      if (text.includes('"content":"A"')) {
        firstAt = read.at;
        break;
      }
    }
    assert.ok(firstAt < record.writes[3].at, 'A reached the client before the stub wrote [DONE]');

    const stream = await client.chat.completions.create(r0({ gzip: true, reads }));
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk.choices[0].delta.content);
    assert.deepEqual(chunks, ['A', 'B', 'C']);
  });
});

describe('slow upstreams and departed clients', () => {
  test('a slow drip, one byte per write: the stream comes through byte for byte', async () => {
    const reads = [
      chunkEvent('Drip'),
      chunkEvent(' by'),
      chunkEvent(' drip, ünïcödé ✓'),
      'data: [DONE]\n\n',
    ];
    const result = await ask('drip', { reads, drip_ms: 1 });
    const [record] = await assertAttempts(result.id, 1);
    assert.ok(record.writes.length > 400, `one byte per write (${record.writes.length} writes)`);
    assertWholeStream(result, record);
  });

  test('a slow drip of a JSON completion', async () => {
    const result = await ask('drip-json', { drip_ms: 0 }, { stream: false });
    assert.equal(result.status, 200, result.text);
    const [record] = await assertAttempts(result.id, 1);
    assert.ok(record.writes.length > 100);
    assert.equal(result.text, withPersona(sentBy(record)));
  });

  test('a client that leaves mid-stream makes the stub see its connection closed', async () => {
    const id = requestId('gone');
    const reads = Array.from({ length: 20 }, (_, i) => chunkEvent(`part ${i}`));
    const controller = new AbortController();
    const response = await fetch(`${gw.baseURL}/chat/completions`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-request-id': id,
        authorization: `Bearer ${clientKey()}`,
      },
      body: JSON.stringify(r0({ reads, delay_ms: 300 })),
      signal: controller.signal,
    });
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('x-request-id'), id);
    // Reads until the first event is whole: a read may end anywhere.
    const reader = response.body.getReader();
    let first = '';
    while (!first.includes('\n\n')) {
      const step = await reader.read();
      assert.ok(!step.done, `the stream went on past ${JSON.stringify(first)}`);
      first += Buffer.from(step.value).toString('utf8');
    }
    assert.match(first, /"content":"part 0"/);
    const leftAt = Date.now();
    controller.abort();

    const record = await closedByGateway(gw, id, 8000);
    const after = record.client_closed_at - leftAt;
    assert.ok(after < 5000, `the stub saw the close ${after} ms after the client left`);
    assert.ok(record.writes.length < 20, `the stub stopped early (${record.writes.length} of 20)`);
    await assertLogged(id, { outcome: 'client_gone' });
  });
});

describe('an upstream that refuses connections', () => {
  let refused;
  before(
    async () => {
      const closed = await freePort();
      refused = await startGateway({
        build: false,
        vars: { ...VARS, ZAGUAN_BASE_URL: `http://127.0.0.1:${closed}/v1` },
      });
    },
    { timeout: START_MS },
  );
  after(async () => {
    await refused?.stop();
  });

  test('a refused connection is retried, then 502 upstream_unreachable', async () => {
    for (const stream of [true, false]) {
      const id = requestId('refused');
      const started = Date.now();
      const result = await chat(refused, r0(null, { stream }), { id });
      assertOpenAIError(result, 502, { code: 'upstream_unreachable' });
      assert.equal(result.headers.get('x-request-id'), id);
      assert.ok(Date.now() - started < 20_000, 'promptly');
      // No stub to count the attempts: the log line does.
      const line = await logLine(refused, id);
      assert.ok(line, `a log line for ${id}`);
      assert.equal(line.attempts, ATTEMPTS, JSON.stringify(line));
      assert.equal(line.status, 502);
      assert.equal(line.outcome, 'upstream_error');
    }
    const error = await sdk(refused)
      .chat.completions.create(r0(null))
      .then(() => null, (caught) => caught);
    assert.ok(error instanceof OpenAI.InternalServerError, `a 502 APIError, got ${error}`);
    assert.equal(error.status, 502);
    assert.equal(error.code, 'upstream_unreachable');
  });
});
