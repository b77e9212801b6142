// Observability, end to end: the one JSON log line each request leaves (read from the Worker's
// console output), the Server-Timing header, the usage chunk asked of the upstream for the
// logs, and LOG_LEVEL=error.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { CLIENT_KEYS, UPSTREAM_KEY } from './harness.mjs';
import {
  FILES,
  PERSONA,
  SHARED_START,
  SOCRATES,
  clientKey,
  requestId,
  send,
  upstreamSaw,
} from './helpers.mjs';
import { startLoggedGateway } from './battery.mjs';

const START = { timeout: 15 * 60_000 };
/** Text every prompt of this suite carries, which no log line may hold. */
const MARKER = 'obs-prompt-marker-5f1d';
const hi = [{ role: 'user', content: `${MARKER} hello` }];
const FIELDS = new Set([
  'request_id',
  'method',
  'path',
  'persona',
  'upstream_model',
  'stream',
  'status',
  'outcome',
  'attempts',
  'upstream_first_byte_ms',
  'client_first_byte_ms',
  'duration_ms',
  'bytes_out',
  'prompt_tokens',
  'completion_tokens',
  'total_tokens',
  'error',
]);
const FIRST_BYTE_TIMEOUT_MS = 1500;
const IDLE_TIMEOUT_MS = 1500;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function chat(gw, body, id, headers = {}) {
  return send(gw, '/v1/chat/completions', {
    body: { model: PERSONA, messages: hi, ...body },
    id,
    headers,
  });
}

/** The usage the stub sent for a request: in its completion, or in its stream's usage chunk. */
async function stubUsage(gw, id) {
  const [record] = await upstreamSaw(gw, id);
  const text = Buffer.from(record.sent_b64, 'base64').toString('utf8');
  if (!text.startsWith('data:')) return JSON.parse(text).usage;
  const events = text.split('\n\n').filter((e) => e.startsWith('data: {'));
  const usage = events.map((e) => JSON.parse(e.slice(6)).usage).filter(Boolean);
  assert.equal(usage.length, 1, 'the stub sent one usage chunk');
  return usage[0];
}

/** The data events of an SSE text, parsed, without [DONE]. */
function events(text) {
  return text
    .split('\n\n')
    .filter((e) => e.startsWith('data: {'))
    .map((e) => JSON.parse(e.slice(6)));
}

function assertTokens(line, usage) {
  assert.deepEqual(
    [line.prompt_tokens, line.completion_tokens, line.total_tokens],
    [usage.prompt_tokens, usage.completion_tokens, usage.total_tokens],
  );
}

/** The fields every line has, right for a chat request. */
function assertShape(line, id, { stream = false } = {}) {
  for (const key of Object.keys(line)) assert.ok(FIELDS.has(key), `undocumented field ${key}`);
  assert.equal(line.request_id, id);
  assert.equal(line.method, 'POST');
  assert.equal(line.path, '/v1/chat/completions');
  assert.equal(line.stream, stream);
  assert.equal(typeof line.duration_ms, 'number');
  assert.equal(typeof line.bytes_out, 'number');
  assert.equal(typeof line.attempts, 'number');
}

const serverTiming =
  /^gateway;dur=\d+(\.\d+)?(, kv;dur=\d+(\.\d+)?)?(, upstream;dur=\d+(\.\d+)?)?$/;

/** Server-Timing's durations by name. */
function timings(header) {
  assert.match(header ?? '', serverTiming, `server-timing: ${header}`);
  return Object.fromEntries(
    header.split(', ').map((part) => {
      const [name, dur] = part.split(';dur=');
      return [name, Number(dur)];
    }),
  );
}

describe('an instance at LOG_LEVEL info', () => {
  let gw;
  const ids = [];
  const track = (tag) => {
    const id = requestId(tag);
    ids.push(id);
    return id;
  };
  before(async () => {
    gw = await startLoggedGateway({
      RETRY_BASE_DELAY_MS: '10',
      UPSTREAM_FIRST_BYTE_TIMEOUT_MS: String(FIRST_BYTE_TIMEOUT_MS),
      UPSTREAM_IDLE_TIMEOUT_MS: String(IDLE_TIMEOUT_MS),
    });
  }, START);
  after(() => gw?.stop());

  describe('one JSON log line per request', () => {
    test('a success, not streamed', async () => {
      const id = track('ok');
      const result = await chat(gw, {}, id);
      assert.equal(result.status, 200);
      const { line, level } = await gw.lineFor(id);
      assertShape(line, id);
      assert.equal(level, 'log');
      assert.equal(line.persona, PERSONA);
      assert.equal(line.upstream_model, SOCRATES.header.upstream_model);
      assert.equal(line.status, 200);
      assert.equal(line.outcome, 'ok');
      assert.equal(line.attempts, 1);
      assert.equal(typeof line.upstream_first_byte_ms, 'number');
      assert.ok(line.duration_ms >= line.upstream_first_byte_ms);
      assert.ok(
        line.client_first_byte_ms === null || typeof line.client_first_byte_ms === 'number',
      );
      assert.equal(line.bytes_out, result.bytes.length);
      assert.ok(!('error' in line));
      assertTokens(line, await stubUsage(gw, id));
      assertTokens(line, JSON.parse(result.text).usage);
    });

    test('a success, streamed', async () => {
      const id = track('ok-stream');
      const result = await chat(gw, { stream: true }, id);
      assert.equal(result.status, 200);
      const { line, level } = await gw.lineFor(id);
      assertShape(line, id, { stream: true });
      assert.equal(level, 'log');
      assert.equal(line.persona, PERSONA);
      assert.equal(line.upstream_model, SOCRATES.header.upstream_model);
      assert.deepEqual([line.status, line.outcome, line.attempts], [200, 'ok', 1]);
      assert.equal(typeof line.upstream_first_byte_ms, 'number');
      assert.equal(typeof line.client_first_byte_ms, 'number');
      assert.ok(line.client_first_byte_ms <= line.duration_ms);
      assert.ok(line.bytes_out > 0);
      assert.equal(line.bytes_out, result.bytes.length, 'bytes_out is what the client got');
      assertTokens(line, await stubUsage(gw, id));
    });

    test('a client error: 404 for a persona that does not exist', async () => {
      const id = track('no-persona');
      const result = await chat(gw, { model: 'zaguanai/nobody' }, id);
      assert.equal(result.status, 404);
      const { line, level } = await gw.lineFor(id);
      assertShape(line, id);
      assert.equal(level, 'warn');
      assert.deepEqual([line.status, line.outcome, line.attempts], [404, 'client_error', 0]);
      assert.equal(line.error?.class, 'model_not_found');
      assert.equal(typeof line.error.reason, 'string');
      assert.equal(line.persona, null);
    });

    test('a client error: 400 for a body that is not JSON', async () => {
      const id = track('bad-json');
      const result = await send(gw, '/v1/chat/completions', { body: '{"model"', id });
      assert.equal(result.status, 400);
      const { line } = await gw.lineFor(id);
      assert.deepEqual(
        [line.status, line.outcome, line.error?.class],
        [400, 'client_error', 'invalid_json'],
      );
    });

    test('an upstream error: an HTML 502, after the retries', async () => {
      const id = track('html-502');
      const html = '<html><body><h1>502 Bad Gateway</h1></body></html>';
      const result = await chat(gw, { x_stub: { status: 502, body: html } }, id);
      assert.equal(result.status, 502);
      const { line, level } = await gw.lineFor(id);
      assertShape(line, id);
      assert.equal(level, 'error');
      assert.deepEqual([line.status, line.outcome, line.attempts], [502, 'upstream_error', 3]);
      assert.equal(line.error?.class, 'upstream_error');
      assert.equal(line.persona, PERSONA);
      assert.equal(typeof line.upstream_first_byte_ms, 'number');
    });

    test("an upstream error in OpenAI's format, passed on, has an error class", async () => {
      const id = track('passed-403');
      const body = {
        error: {
          message: 'Not in your band.',
          type: 'invalid_request_error',
          param: null,
          code: 'band_access_denied',
        },
      };
      const result = await chat(gw, { x_stub: { status: 403, body } }, id);
      assert.equal(result.status, 403);
      const { line } = await gw.lineFor(id);
      assert.deepEqual([line.status, line.outcome, line.attempts], [403, 'upstream_error', 1]);
      assert.ok(
        typeof line.error?.class === 'string' && line.error.class.length > 0,
        `README: failures carry error.class; the line: ${JSON.stringify(line)}`,
      );
    });

    test('a timeout: no response headers within UPSTREAM_FIRST_BYTE_TIMEOUT_MS', async () => {
      const id = track('first-byte-timeout');
      const result = await chat(gw, { x_stub: { hang_ms: 10_000 } }, id);
      assert.equal(result.status, 504);
      const { line, level } = await gw.lineFor(id);
      assertShape(line, id);
      assert.equal(level, 'error');
      assert.deepEqual([line.status, line.outcome, line.attempts], [504, 'timeout', 1]);
      assert.equal(line.error?.class, 'upstream_timeout');
      assert.ok(line.duration_ms >= FIRST_BYTE_TIMEOUT_MS, `duration ${line.duration_ms}`);
    });

    test('a timeout mid-stream: logged once the stream ended', async () => {
      const id = track('idle-timeout');
      const response = await fetch(`${gw.origin}/v1/chat/completions`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${clientKey()}`,
          'content-type': 'application/json',
          'x-request-id': id,
        },
        body: JSON.stringify({
          model: PERSONA,
          messages: hi,
          stream: true,
          x_stub: { stall_after: 2, stall_ms: 8000 },
        }),
        signal: AbortSignal.timeout(30_000),
      });
      assert.equal(response.status, 200);
      const chunks = [];
      const reader = response.body.getReader();
      chunks.push(Buffer.from((await reader.read()).value));
      assert.equal((await gw.linesFor(id, 300)).length, 0, 'a line before the stream ended');
      for (let step = await reader.read(); !step.done; step = await reader.read()) {
        chunks.push(Buffer.from(step.value));
      }
      const text = Buffer.concat(chunks).toString('utf8');
      assert.match(text, /upstream_idle_timeout/);
      const { line, level } = await gw.lineFor(id);
      assertShape(line, id, { stream: true });
      assert.equal(level, 'error');
      assert.deepEqual([line.status, line.outcome], [200, 'timeout']);
      assert.equal(line.error?.class, 'upstream_idle_timeout');
      assert.equal(line.bytes_out, Buffer.concat(chunks).length);
      assert.ok(line.duration_ms >= IDLE_TIMEOUT_MS);
    });

    test('a client that leaves mid-stream: client_gone, logged after it left', async () => {
      const id = track('client-gone');
      const controller = new AbortController();
      const started = Date.now();
      const response = await fetch(`${gw.origin}/v1/chat/completions`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${clientKey()}`,
          'content-type': 'application/json',
          'x-request-id': id,
        },
        body: JSON.stringify({
          model: PERSONA,
          messages: hi,
          stream: true,
          x_stub: { delay_ms: 400 },
        }),
        signal: controller.signal,
      });
      assert.equal(response.status, 200);
      const reader = response.body.getReader();
      const first = await reader.read();
      assert.match(Buffer.from(first.value).toString('utf8'), /^data: /);
      assert.equal((await gw.linesFor(id, 200)).length, 0, 'a line before the client left');
      const left = Date.now();
      controller.abort();
      await reader.read().catch(() => {});
      const found = await gw.lineFor(id, 15_000);
      assert.ok(found, 'no line after the client left');
      const { line, level } = found;
      assertShape(line, id, { stream: true });
      assert.equal(level, 'warn');
      assert.deepEqual([line.status, line.outcome], [200, 'client_gone']);
      assert.equal(line.error?.class, 'client_gone');
      assert.ok(line.bytes_out > 0);
      assert.ok(
        line.duration_ms >= left - started - 50,
        `logged before the client left: ${line.duration_ms}`,
      );
      const [record] = await upstreamSaw(gw, id);
      assert.ok(record.client_closed_at !== null, 'the upstream request was cancelled');
    });

    test('GET /health and /v1/models are logged too', async () => {
      for (const pathname of ['/health', '/v1/models']) {
        const id = track('get');
        const result = await send(gw, pathname, { method: 'GET', id });
        assert.equal(result.status, 200);
        const { line } = await gw.lineFor(id);
        assert.deepEqual(
          [line.method, line.path, line.status, line.outcome],
          ['GET', pathname, 200, 'ok'],
        );
      }
    });

    test('each request left exactly one line', async () => {
      await sleep(1000);
      for (const id of ids) {
        const lines = (await gw.linesFor(id, 0)).map((entry) => entry.line);
        assert.equal(lines.length, 1, `${id}: ${JSON.stringify(lines)}`);
      }
    });

    test('no line holds a prompt, a completion, a key or a header', () => {
      const log = gw.log();
      const lines = gw.lines();
      assert.ok(lines.length >= ids.length);
      for (const { line } of lines) {
        for (const key of Object.keys(line))
          assert.ok(FIELDS.has(key), `undocumented field ${key}`);
        if (line.error) assert.deepEqual(Object.keys(line.error).sort(), ['class', 'reason']);
      }
      const body = SOCRATES.body;
      const secrets = {
        'the prompt': MARKER,
        'the completion': 'You asked:',
        'the upstream key': UPSTREAM_KEY,
        'the shared system prompt': SHARED_START,
        "Socrates' prompt": body.slice(0, 60),
        'a header dump (authorization)': 'authorization',
        'a header dump (Bearer)': 'Bearer',
        'a header dump (user-agent)': 'user-agent',
        'a header dump (content-type)': 'content-type',
      };
      for (const [what, text] of Object.entries(secrets)) {
        assert.ok(!log.toLowerCase().includes(text.toLowerCase()), `the log holds ${what}`);
      }
      for (const key of CLIENT_KEYS) assert.ok(!log.includes(key), 'the log holds a client key');
      for (const persona of FILES.personas) {
        assert.ok(!log.includes(persona.body.slice(0, 60)), `the log holds ${persona.id}'s prompt`);
      }
    });

    test('a CORS preflight is logged like any request', async () => {
      const id = requestId('preflight');
      const response = await fetch(`${gw.origin}/v1/chat/completions`, {
        method: 'OPTIONS',
        headers: {
          origin: 'https://app.example',
          'access-control-request-method': 'POST',
          'x-request-id': id,
        },
      });
      await response.arrayBuffer();
      assert.ok(
        await gw.lineFor(id, 3000),
        'README: one JSON log line per request; none for OPTIONS',
      );
    });
  });

  describe('Server-Timing', () => {
    const cases = [
      ['a success', () => chat(gw, {}), ['gateway', 'kv', 'upstream']],
      ['a stream', () => chat(gw, { stream: true }), ['gateway', 'kv', 'upstream']],
      ['400 invalid JSON', () => send(gw, '/v1/chat/completions', { body: '{' }), ['gateway']],
      ['401 no key', () => chat(gw, {}, undefined, { authorization: null }), ['gateway']],
      ['404 unknown path', () => send(gw, '/v1/nothing', { method: 'GET' }), ['gateway']],
      ['404 unknown persona', () => chat(gw, { model: 'zaguanai/nobody' }), ['gateway']],
      ['405', () => send(gw, '/v1/chat/completions', { method: 'GET' }), ['gateway']],
      ['413', () => chat(gw, { pad: 'x'.repeat(1_100_000) }), ['gateway']],
      [
        'an upstream 502',
        () => chat(gw, { x_stub: { status: 502, body: '<html></html>' } }),
        ['gateway', 'upstream'],
      ],
      [
        'an upstream 429 passed on',
        () =>
          chat(gw, {
            x_stub: {
              status: 429,
              headers: { 'retry-after': '3600' },
              body: {
                error: {
                  message: 'slow',
                  type: 'rate_limit_error',
                  param: null,
                  code: 'rate_limit_exceeded',
                },
              },
            },
          }),
        ['gateway', 'upstream'],
      ],
      ['a 504', () => chat(gw, { x_stub: { hang_ms: 10_000 } }), ['gateway']],
      ['GET /health', () => send(gw, '/health', { method: 'GET' }), ['gateway']],
      ['GET /v1/models', () => send(gw, '/v1/models', { method: 'GET' }), ['gateway']],
      [
        'GET /v1/models/{id}',
        () => send(gw, '/v1/models/zaguanai%2Fsocrates', { method: 'GET' }),
        ['gateway'],
      ],
    ];
    for (const [label, make, names] of cases) {
      test(`on ${label}: ${names.join(', ')}`, async () => {
        const result = await make();
        const parts = timings(result.headers.get('server-timing'));
        for (const name of names) assert.ok(name in parts, `${name} missing`);
      });
    }

    test('on a CORS preflight', async () => {
      const response = await fetch(`${gw.origin}/v1/chat/completions`, {
        method: 'OPTIONS',
        headers: { origin: 'https://app.example', 'access-control-request-method': 'POST' },
      });
      await response.arrayBuffer();
      timings(response.headers.get('server-timing'));
    });

    test("upstream is the wait for the upstream's headers, not all time before", async () => {
      // The client takes 800 ms to send its body; the stub answers at once.
      const id = requestId('slow-body');
      const body = JSON.stringify({ model: 'zaguanai/hypatia', messages: hi });
      const encoder = new TextEncoder();
      const slowBody = new ReadableStream({
        async start(controller) {
          controller.enqueue(encoder.encode(body.slice(0, 20)));
          await sleep(800);
          controller.enqueue(encoder.encode(body.slice(20)));
          controller.close();
        },
      });
      const response = await fetch(`${gw.origin}/v1/chat/completions`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${clientKey()}`,
          'content-type': 'application/json',
          'x-request-id': id,
        },
        body: slowBody,
        duplex: 'half',
      });
      await response.arrayBuffer();
      assert.equal(response.status, 200);
      const parts = timings(response.headers.get('server-timing'));
      const { line } = await gw.lineFor(id);
      assert.ok(
        parts.upstream < 400,
        `upstream;dur=${parts.upstream} though the stub answered at once (Server-Timing: ` +
          `${response.headers.get('server-timing')}; log duration_ms ${line.duration_ms})`,
      );
      const sum = parts.gateway + parts.kv + parts.upstream;
      assert.ok(
        sum <= line.duration_ms + 2,
        `the parts (${sum}) exceed the whole (${line.duration_ms})`,
      );
    });
  });

  describe('the usage chunk', () => {
    test('not asked for: asked upstream, kept from the client, counted in the log', async () => {
      for (const streamOptions of [
        undefined,
        { include_usage: false, continuous_usage_stats: true },
      ]) {
        const id = requestId('usage-hidden');
        const extra = streamOptions ? { stream_options: streamOptions } : {};
        const result = await chat(gw, { stream: true, ...extra }, id);
        assert.equal(result.status, 200);
        const [record] = await upstreamSaw(gw, id);
        assert.equal(record.json.stream_options.include_usage, true);
        if (streamOptions) assert.equal(record.json.stream_options.continuous_usage_stats, true);
        const sent = events(result.text);
        assert.ok(sent.length > 3);
        assert.ok(
          sent.every((event) => !('usage' in event)),
          'a usage chunk reached the client',
        );
        assert.ok(sent.every((event) => event.choices.length > 0));
        assert.match(result.text, /data: \[DONE\]\n\n$/);
        const { line } = await gw.lineFor(id);
        assertTokens(line, await stubUsage(gw, id));
        assert.ok(line.total_tokens > 0);
      }
    });

    test('asked for: the usage chunk passes with only its model rewritten', async () => {
      const id = requestId('usage-shown');
      const result = await chat(gw, { stream: true, stream_options: { include_usage: true } }, id);
      assert.equal(result.status, 200);
      const [record] = await upstreamSaw(gw, id);
      const upstream = Buffer.from(record.sent_b64, 'base64').toString('utf8');
      const usageEvent = upstream.split('\n\n').find((e) => e.includes('"usage":{'));
      assert.ok(usageEvent, 'the stub sent a usage chunk');
      const model = JSON.stringify(SOCRATES.header.upstream_model);
      assert.ok(usageEvent.includes(`"model":${model}`));
      const expected = usageEvent.replace(`"model":${model}`, `"model":${JSON.stringify(PERSONA)}`);
      assert.ok(
        result.text.includes(`${expected}\n\n`),
        'the usage chunk changed beyond its model',
      );
      const { line } = await gw.lineFor(id);
      assertTokens(line, JSON.parse(expected.slice(6)).usage);
    });
  });
});

describe('an instance at LOG_LEVEL error', () => {
  let gw;
  before(async () => {
    gw = await startLoggedGateway({ LOG_LEVEL: 'error', RETRY_BASE_DELAY_MS: '10' });
  }, START);
  after(() => gw?.stop());

  test('successes write no line; failures do', async () => {
    const quiet = [];
    for (const stream of [false, true]) {
      const id = requestId('quiet');
      quiet.push(id);
      assert.equal((await chat(gw, { stream }, id)).status, 200);
    }
    const health = requestId('quiet-health');
    quiet.push(health);
    assert.equal((await send(gw, '/health', { method: 'GET', id: health })).status, 200);

    const failures = [
      [requestId('loud-404'), { model: 'zaguanai/nobody' }, 404, 'client_error'],
      [
        requestId('loud-502'),
        { x_stub: { status: 502, body: '<html></html>' } },
        502,
        'upstream_error',
      ],
    ];
    for (const [id, body, status, outcome] of failures) {
      assert.equal((await chat(gw, body, id)).status, status);
      const found = await gw.lineFor(id);
      assert.ok(found, `no line for a ${status}`);
      assert.equal(found.line.outcome, outcome);
    }
    await sleep(500);
    for (const id of quiet) assert.equal((await gw.linesFor(id, 0)).length, 0, `a line for ${id}`);
  });
});
