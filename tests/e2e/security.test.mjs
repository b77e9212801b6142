// Security, end to end: a battery of malformed requests (battery.mjs) with a valid request
// between every twenty; client keys with and without ALLOW_ANONYMOUS; what reaches the upstream;
// request ids with control characters; declared body sizes; CORS; persona limits; content the
// gateway must pass through. Each group starts the instance it needs.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { CLIENT_KEYS, RATE_LIMIT_KEY, ROOT, UPSTREAM_KEY } from './harness.mjs';
import {
  PERSONA,
  assertOpenAIError,
  assertSaneId,
  clientKey,
  requestId,
  send,
  theUpstreamRequest,
  upstreamSaw,
} from './helpers.mjs';
import {
  battery,
  forwardedCases,
  rawBytes,
  sendFetch,
  sendRaw,
  startLoggedGateway,
} from './battery.mjs';

const START = { timeout: 15 * 60_000 };
const hi = [{ role: 'user', content: 'hi' }];
/** A key of this suite's own for the rate-limit test, added to the instance's keys. */
const RATE_KEY = 'sk-e2e-security-rate-limit';
const ALL_KEYS = [...CLIENT_KEYS, RATE_LIMIT_KEY, RATE_KEY].join(',');

/** A valid request, checked whole: the gateway still serves after what came before it. */
async function assertServes(gw, n) {
  const stream = n % 2 === 1;
  const id = requestId(`valid-${n}`);
  const content = `still serving after case ${n}`;
  const result = await sendFetch(
    gw,
    {
      method: 'POST',
      path: '/v1/chat/completions',
      body: JSON.stringify({ model: PERSONA, messages: [{ role: 'user', content }], stream }),
    },
    { id, key: clientKey() },
  );
  assert.ok(!result.hung, 'the valid request got no answer within 20 s');
  assert.equal(result.status, 200, result.text.slice(0, 300));
  assert.equal(result.headers['x-request-id'], id);
  if (stream) {
    assert.match(result.text, /data: \[DONE\]\n\n$/);
    assert.ok(result.text.includes('"model":"zaguanai/socrates"'));
    assert.ok(result.text.includes(content.split(' ')[0]));
  } else {
    const body = JSON.parse(result.text);
    assert.equal(body.model, PERSONA);
    assert.ok(body.choices[0].message.content.includes(content));
  }
}

/** Runs one battery case and checks its answer. */
async function runCase(gw, item, n) {
  const id = requestId(`battery-${n}`);
  const { request, expect } = item;
  const result = request.raw
    ? await sendRaw(gw, rawBytes(request.raw, id))
    : await sendFetch(gw, request, { id, key: clientKey() });
  assert.ok(!result.hung, 'no answer within 20 s');
  const answer = `status ${result.status}: ${result.text.slice(0, 300)}`;
  assert.ok(!('x-injected' in result.headers), 'a header was injected into the response');

  if (expect.kind === 'runtime') {
    assert.equal(result.status, expect.status, answer);
    assert.equal(result.headers['x-request-id'], undefined, 'the Worker answered');
    return;
  }
  if (expect.kind === 'forwarded') {
    assert.equal(result.status, 200, answer);
    const seen = await theUpstreamRequest(gw, id);
    assert.ok(seen.body.includes(expect.text), 'the upstream got the field as the client sent it');
    return;
  }

  if (expect.orForwarded && result.status === 200) {
    const seen = await theUpstreamRequest(gw, id);
    const { field, text } = expect.orForwarded;
    const got = JSON.stringify(JSON.parse(seen.body)[field]);
    assert.ok(
      seen.body.includes(text),
      `neither refused nor forwarded: the client sent ${text}, the gateway answered 200 and ` +
        `the upstream got "${field}":${got}`,
    );
    return;
  }

  assert.equal(result.status, expect.status, answer);
  assert.match(result.headers['content-type'] ?? '', /^application\/json/, answer);
  assert.ok(result.headers['server-timing'], 'server-timing on the error');
  const answeredId = result.headers['x-request-id'];
  if (expect.idReplaced) {
    assertSaneId(answeredId);
    assert.ok(!answeredId.includes(id), `the malformed id was echoed: ${answeredId}`);
  } else {
    assert.equal(answeredId, id);
  }
  if (expect.allow) assert.equal(result.headers.allow, expect.allow);
  if (expect.status === 401) assert.equal(result.headers['www-authenticate'], 'Bearer');
  if (expect.noBody) {
    assert.equal(result.text, '');
  } else {
    assert.doesNotMatch(result.text, /<html|<!doctype/i);
    const body = JSON.parse(result.text);
    assert.deepEqual(Object.keys(body), ['error'], answer);
    assert.deepEqual(Object.keys(body.error).sort(), ['code', 'message', 'param', 'type'], answer);
    assert.ok([expect.code].flat().includes(body.error.code), answer);
    assert.equal(body.error.type, 'invalid_request_error', answer);
    const params = [expect.param].flat();
    assert.ok(params.includes(body.error.param), `param ${JSON.stringify(body.error.param)}`);
    assert.match(body.error.message, expect.mention, answer);
    if (expect.shortMessage) assert.ok(body.error.message.length < 300, 'client text shortened');
  }
  assert.deepEqual(await upstreamSaw(gw, answeredId), [], 'nothing reached the upstream');
}

describe('the default instance', () => {
  let gw;
  before(async () => {
    gw = await startLoggedGateway({ GATEWAY_API_KEYS: ALL_KEYS });
  }, START);
  after(() => gw?.stop());

  describe('a battery of malformed requests', () => {
    const cases = battery();

    test('the battery holds at least 300 requests that must be refused', () => {
      assert.ok(cases.length >= 300, `${cases.length} cases`);
    });

    cases.forEach((item, n) => {
      test(`#${n} ${item.group}: ${item.name}`, { timeout: 60_000 }, () => runCase(gw, item, n));
      if (n % 20 === 19) {
        test(`a valid request still succeeds after case #${n}`, { timeout: 60_000 }, () =>
          assertServes(gw, n),
        );
      }
    });

    forwardedCases().forEach((item, n) => {
      test(`forwarded as valid: ${item.name}`, { timeout: 60_000 }, () =>
        runCase(gw, item, cases.length + n),
      );
    });

    test('the Worker neither panicked nor threw during the battery', async () => {
      await assertServes(gw, cases.length);
      const log = gw.log();
      assert.doesNotMatch(log, /panicked at|RuntimeError: unreachable|Uncaught/);
      const lines = gw.lines();
      assert.ok(lines.length >= cases.length, `${lines.length} log lines`);
      for (const { line } of lines) {
        assert.ok(line.status < 500, `a 5xx was logged: ${JSON.stringify(line)}`);
      }
    });
  });

  describe('upstream headers, request ids, rate limit, body sizes, CORS off, pass-through', () => {
    const clientHeaders = {
      cookie: 'session=client-cookie-value; other=1',
      'cf-connecting-ip': '203.0.113.7',
      'cf-ipcountry': 'XX',
      'cf-ray': 'client-ray-0000',
      'cf-visitor': '{"scheme":"https"}',
      'cf-worker': 'client-worker.example',
      'cf-access-client-secret': 'client-access-secret',
      'x-forwarded-for': '203.0.113.8',
      'x-forwarded-proto': 'https',
      'x-forwarded-host': 'client-forwarded-host.example',
      'x-real-ip': '203.0.113.9',
      forwarded: 'for=203.0.113.10',
      'x-api-key': 'client-x-api-key',
      'proxy-authorization': 'Basic client-proxy-secret',
      'user-agent': 'client-user-agent/1.0',
      'openai-organization': 'org-client',
    };
    /** What the upstream may see: the gateway's own headers and what the runtime adds. */
    const UPSTREAM_HEADERS = new Set([
      'authorization',
      'content-type',
      'accept',
      'x-request-id',
      'user-agent',
      'host',
      'content-length',
      'transfer-encoding',
      'connection',
      'accept-encoding',
      'cf-worker',
    ]);

    function assertCleanUpstream(seen, key) {
      for (const name of Object.keys(seen.headers)) {
        assert.ok(UPSTREAM_HEADERS.has(name), `the upstream got the header ${name}`);
      }
      assert.equal(seen.headers.authorization, `Bearer ${UPSTREAM_KEY}`);
      assert.equal(seen.headers['user-agent'], 'persona-gateway');
      const text = JSON.stringify(seen.headers);
      assert.ok(!text.includes(key), "the client's key reached the upstream");
      for (const [name, value] of Object.entries(clientHeaders)) {
        assert.ok(!text.includes(value), `the client's ${name} reached the upstream`);
      }
    }

    for (const stream of [false, true]) {
      test(`client keys, cookies, cf-*, x-forwarded-* stay home (stream: ${stream})`, async () => {
        const id = requestId('headers');
        const key = clientKey();
        const result = await chatWith(gw, { model: PERSONA, messages: hi, stream }, id, {
          ...clientHeaders,
          authorization: `Bearer ${key}`,
        });
        assert.equal(result.status, 200);
        assertCleanUpstream(await theUpstreamRequest(gw, id), key);
      });
    }

    test('every retried attempt carries only the gateway headers', async () => {
      const id = requestId('headers-retry');
      const key = clientKey();
      const body = {
        model: PERSONA,
        messages: hi,
        x_stub: { fail_first: { count: 1, status: 503 } },
      };
      const result = await chatWith(gw, body, id, {
        ...clientHeaders,
        authorization: `Bearer ${key}`,
      });
      assert.equal(result.status, 200);
      const seen = await upstreamSaw(gw, id);
      assert.equal(seen.length, 2, 'one retry');
      for (const attempt of seen) assertCleanUpstream(attempt, key);
    });

    const controls = {
      'a \\x01': 'ctl\x01{{ID}}',
      'an ANSI escape': '\x1b[2J\x1b[31m{{ID}}',
      'a backspace': '{{ID}}\x08\x08\x08',
      'a DEL': '{{ID}}\x7f',
      'a vertical tab and a form feed': '{{ID}}\x0b\x0c',
    };
    for (const [label, value] of Object.entries(controls)) {
      test(`an X-Request-ID with ${label} is replaced, upstream and in the log`, async () => {
        const id = requestId('ctl');
        const sent = value.replaceAll('{{ID}}', id);
        const result = await sendRaw(
          gw,
          rawBytes(
            {
              method: 'POST',
              target: '/v1/chat/completions',
              headers: { authorization: `Bearer ${clientKey()}`, 'x-request-id': value },
              body: JSON.stringify({ model: PERSONA, messages: hi }),
            },
            id,
          ),
        );
        assert.equal(result.status, 200, result.text);
        const answered = result.headers['x-request-id'];
        assertSaneId(answered);
        assert.ok(!answered.includes(id), `echoed: ${JSON.stringify(answered)}`);
        const seen = await theUpstreamRequest(gw, answered);
        assert.equal(seen.headers['x-request-id'], answered);
        const line = await gw.lineFor(answered);
        assert.ok(line, 'a log line under the generated id');
        assert.ok(!gw.log().includes(sent), 'the raw id reached the log');
        assert.ok(!gw.log().includes(id), 'the client id reached the log');
      });
    }

    for (const [label, separator] of [
      ['CR LF', '\r\n'],
      ['a bare CR', '\r'],
      ['a bare LF', '\n'],
    ]) {
      test(`an X-Request-ID with ${label} injects no header`, async () => {
        const id = requestId('crlf');
        const result = await sendRaw(
          gw,
          rawBytes(
            {
              method: 'POST',
              target: '/v1/chat/completions',
              headers: {
                authorization: `Bearer ${clientKey()}`,
                'x-request-id': `{{ID}}${separator}X-Injected: yes`,
              },
              body: JSON.stringify({ model: PERSONA, messages: hi }),
            },
            id,
          ),
        );
        assert.ok(!result.hung, 'no answer');
        assert.ok(!('x-injected' in result.headers), 'a header was injected');
        assert.ok(result.status < 500, `status ${result.status}`);
        if (result.status === 200) {
          // CR LF then a header line is two headers, legally: the id is then the first part.
          assert.equal(result.headers['x-request-id'], id);
        }
        assert.ok(!JSON.stringify(result.headers).includes('X-Injected'));
      });
    }

    test(
      'a rate-limited chat request: 429 rate_limit_error, retry-after the period, nothing upstream',
      { timeout: 120_000 },
      async () => {
        const period = /RATE_LIMIT_PERIOD_SECONDS\s*=\s*"(\d+)"/.exec(
          fs.readFileSync(path.join(ROOT, 'wrangler.toml'), 'utf8'),
        )?.[1];
        const headers = { authorization: `Bearer ${RATE_KEY}` };
        let limited = null;
        for (let sent = 0; sent < 400 && !limited; sent += 20) {
          const batch = await Promise.all(
            Array.from({ length: 20 }, () => send(gw, '/v1/models', { method: 'GET', headers })),
          );
          limited = batch.find((r) => r.status === 429) ?? null;
        }
        assert.ok(limited, 'the key was never limited');
        const id = requestId('limited-chat');
        const result = await send(gw, '/v1/chat/completions', {
          body: { model: PERSONA, messages: hi },
          headers,
          id,
        });
        const error = assertOpenAIError(result, 429, {
          code: 'rate_limit_exceeded',
          type: 'rate_limit_error',
          param: null,
        });
        assert.match(error.message, new RegExp(`${period} seconds`));
        assert.equal(result.headers.get('retry-after'), period);
        assert.equal(result.headers.get('x-request-id'), id);
        assert.deepEqual(await upstreamSaw(gw, id), []);
      },
    );

    test(
      'a declared Content-Length over the limit is refused at once, even past 4 GiB',
      { timeout: 60_000 },
      async () => {
        for (const length of [2_000_000, 4_294_967_295, 4_294_967_296, 99_999_999_999]) {
          const id = requestId(`declared-${length}`);
          const head =
            'POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n' +
            `Authorization: Bearer ${clientKey()}\r\nX-Request-ID: ${id}\r\n` +
            `Content-Type: application/json\r\nContent-Length: ${length}\r\n\r\n{"model"`;
          // The body never comes; the client gives up after 3 s.
          await sendRaw(gw, Buffer.from(head, 'latin1'), { timeoutMs: 3000 });
          const line = await gw.lineFor(id, 10_000);
          assert.ok(line, `no log line for Content-Length ${length}`);
          assert.deepEqual(
            [line.line.status, line.line.outcome, line.line.error?.class],
            [413, 'client_error', 'request_too_large'],
            `Content-Length ${length}: ${JSON.stringify(line.line)}`,
          );
          assert.ok(
            line.line.duration_ms < 1000,
            `read the body first: ${line.line.duration_ms} ms`,
          );
        }
      },
    );

    test(
      'a body cut short by the client is a client failure, not a gateway error',
      { timeout: 60_000 },
      async () => {
        const id = requestId('cut-body');
        const head =
          'POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n' +
          `Authorization: Bearer ${clientKey()}\r\nX-Request-ID: ${id}\r\n` +
          'Content-Type: application/json\r\nContent-Length: 500\r\n\r\n' +
          '{"model":"zaguanai/socrates"';
        await sendRaw(gw, Buffer.from(head, 'latin1'), { timeoutMs: 3000, keepOpenMs: 500 });
        const line = await gw.lineFor(id, 10_000);
        assert.ok(line, 'no log line');
        assert.ok(
          ['client_error', 'client_gone'].includes(line.line.outcome) && line.line.status < 500,
          `logged as ${line.line.status} ${line.line.outcome} (${line.line.error?.class}): ` +
            JSON.stringify(line.line),
        );
      },
    );

    test('the default instance sends no CORS headers, preflight or not', async () => {
      const origin = 'https://app.example';
      const preflight = await fetch(`${gw.origin}/v1/chat/completions`, {
        method: 'OPTIONS',
        headers: {
          origin,
          'access-control-request-method': 'POST',
          'access-control-request-headers': 'authorization, content-type',
        },
      });
      await preflight.arrayBuffer();
      const actual = await send(gw, '/v1/chat/completions', {
        body: { model: PERSONA, messages: hi },
        headers: { origin },
      });
      assert.equal(actual.status, 200);
      for (const response of [preflight, actual]) {
        const cors = [...response.headers.keys()].filter((k) => k.startsWith('access-control-'));
        assert.deepEqual(cors, [], `CORS headers without ALLOWED_ORIGINS: ${cors}`);
      }
    });

    for (const stream of [false, true]) {
      test(`array content, developer, tool, function roles pass (stream: ${stream})`, async () => {
        const messages =
          '[ {"role":"developer","content":"Answer tersely."},\n' +
          ' {"role":"user","content":[{"type":"text","text":"What is here?"},' +
          '{"type":"image_url",' +
          '"image_url":{"url":"data:image/png;base64,iVBORw0KGgo=","detail":"low"}},' +
          '{"type":"input_audio","input_audio":{"data":"UklGRg==","format":"wav"}}],' +
          '"name":"ada"},\n' +
          ' {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function",' +
          '"function":{"name":"lookup","arguments":"{\\"q\\": \\"x\\"}"}}]},\n' +
          ' {"role":"tool","tool_call_id":"call_1","content":[{"type":"text","text":"42"}]},\n' +
          ' {"role":"function","name":"legacy","content":"ok"},\n' +
          ' {"role":"system","content":"Client system text."},\n' +
          ' {"role":"user","content":"thanks \\u00e9\\ud83d\\ude00"} ]';
        const tools =
          '[{"type":"function","function":{"name":"lookup","parameters":{"type":"object",' +
          '"properties":{"q":{"type":"string"}}}}}]';
        const body =
          `{"model":"${PERSONA}","messages":${messages},"tools":${tools},` +
          `"tool_choice":"auto","stream":${stream}}`;
        const id = requestId('multimodal');
        const result = await send(gw, '/v1/chat/completions', { body, id });
        assert.equal(result.status, 200, result.text.slice(0, 300));
        const seen = await theUpstreamRequest(gw, id);
        const rest = messages.slice(1);
        assert.ok(
          seen.body.includes(`,${rest},"tools":${tools},"tool_choice":"auto"`),
          seen.body.slice(-900),
        );
        const sent = JSON.parse(seen.body);
        assert.equal(sent.messages[0].role, 'system');
        assert.deepEqual(sent.messages.slice(1), JSON.parse(messages));
      });
    }
  });
});

/** A chat request with these headers; the caller names the key. */
function chatWith(gw, body, id, headers) {
  return send(gw, '/v1/chat/completions', { body, id, headers });
}

describe('ALLOW_ANONYMOUS=true with no keys', () => {
  let gw;
  before(async () => {
    gw = await startLoggedGateway({ GATEWAY_API_KEYS: '', ALLOW_ANONYMOUS: 'true' });
  }, START);
  after(() => gw?.stop());

  test('a request without a key is served, and only the upstream key goes upstream', async () => {
    const id = requestId('anonymous');
    const result = await send(gw, '/v1/chat/completions', {
      body: { model: PERSONA, messages: hi },
      headers: { authorization: null },
      id,
    });
    assert.equal(result.status, 200, result.text);
    const seen = await theUpstreamRequest(gw, id);
    assert.equal(seen.headers.authorization, `Bearer ${UPSTREAM_KEY}`);
  });

  test('any key is accepted, and never forwarded', async () => {
    const id = requestId('anonymous-key');
    const result = await send(gw, '/v1/chat/completions', {
      body: { model: PERSONA, messages: hi, stream: true },
      headers: { authorization: 'Bearer anything-at-all' },
      id,
    });
    assert.equal(result.status, 200);
    assert.ok(
      !JSON.stringify((await theUpstreamRequest(gw, id)).headers).includes('anything-at-all'),
    );
  });

  test('/v1/models and /health answer without a key', async () => {
    for (const pathname of ['/v1/models', '/v1/models/zaguanai%2Fsocrates', '/health']) {
      const result = await send(gw, pathname, { method: 'GET', headers: { authorization: null } });
      assert.equal(result.status, 200, pathname);
    }
  });

  test('malformed requests are still refused', async () => {
    const result = await send(gw, '/v1/chat/completions', {
      body: '{"model":',
      headers: { authorization: null },
    });
    assertOpenAIError(result, 400, { code: 'invalid_json' });
  });
});

describe('no keys configured and no ALLOW_ANONYMOUS', () => {
  let gw;
  before(async () => {
    gw = await startLoggedGateway({ GATEWAY_API_KEYS: '' });
  }, START);
  after(() => gw?.stop());

  const requests = [
    ['POST /v1/chat/completions', '/v1/chat/completions', 'POST'],
    ['GET /v1/models', '/v1/models', 'GET'],
    ['GET /v1/models/{id}', '/v1/models/zaguanai%2Fsocrates', 'GET'],
  ];
  for (const [label, pathname, method] of requests) {
    for (const authorization of [null, `Bearer ${CLIENT_KEYS[0]}`, 'Bearer ']) {
      test(`${label} is 401 (authorization: ${JSON.stringify(authorization)})`, async () => {
        const id = requestId('no-keys');
        const body = method === 'POST' ? { model: PERSONA, messages: hi } : undefined;
        const result = await send(gw, pathname, { method, body, id, headers: { authorization } });
        assertOpenAIError(result, 401, { code: 'invalid_api_key', type: 'invalid_request_error' });
        assert.deepEqual(await upstreamSaw(gw, id), []);
      });
    }
  }

  test('/health is still 200', async () => {
    const result = await send(gw, '/health', { method: 'GET', headers: { authorization: null } });
    assert.equal(result.status, 200);
    assert.deepEqual(JSON.parse(result.text), { status: 'ok' });
  });
});

/** The request headers the OpenAI SDK sends, captured from a real call to a local server. */
async function sdkHeaderNames() {
  const seen = [];
  const server = http.createServer((req, res) => {
    seen.push(Object.keys(req.headers));
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[]}');
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const client = new OpenAI({
      baseURL: `http://127.0.0.1:${server.address().port}/v1`,
      apiKey: 'k',
      maxRetries: 0,
    });
    await client.chat.completions.create({ model: 'm', messages: hi });
  } finally {
    server.close();
  }
  // What a browser would ask a preflight for: the headers a script may not send freely.
  return seen[0].filter((name) => /^(authorization|content-type|x-stainless-|openai-)/.test(name));
}

describe('CORS and persona limits (ALLOWED_ORIGINS and tests/personas)', () => {
  const ORIGIN = 'https://app.example';
  const CAPPED = 'zaguanai/e2e-capped';
  let gw;
  before(async () => {
    gw = await startLoggedGateway({ GATEWAY_API_KEYS: ALL_KEYS, ALLOWED_ORIGINS: ORIGIN });
    const sync = spawnSync(
      'cargo',
      [
        'run',
        '--quiet',
        '--bin',
        'personas',
        '--',
        'sync',
        '--local',
        '--persist-to',
        gw.persistDir,
        '--dir',
        'tests/personas',
      ],
      { cwd: ROOT, encoding: 'utf8', timeout: 10 * 60_000 },
    );
    assert.equal(sync.status, 0, `personas sync failed:\n${sync.stdout}\n${sync.stderr}`);
  }, START);
  after(() => gw?.stop());

  describe('CORS', () => {
    test("a preflight from the allowed origin: 204 without a key, the SDK's headers", async () => {
      const names = await sdkHeaderNames();
      assert.ok(
        names.some((n) => n.startsWith('x-stainless-')),
        `SDK headers: ${names}`,
      );
      for (const [pathname, method] of [
        ['/v1/chat/completions', 'POST'],
        ['/v1/models', 'GET'],
      ]) {
        const response = await fetch(`${gw.origin}${pathname}`, {
          method: 'OPTIONS',
          headers: {
            origin: ORIGIN,
            'access-control-request-method': method,
            'access-control-request-headers': names.join(', '),
          },
        });
        assert.equal(response.status, 204, pathname);
        assert.equal(await response.text(), '');
        assert.equal(response.headers.get('access-control-allow-origin'), ORIGIN);
        const methods = (response.headers.get('access-control-allow-methods') ?? '').split(/,\s*/);
        assert.ok(methods.includes(method), `allow-methods: ${methods}`);
        const allowed = (response.headers.get('access-control-allow-headers') ?? '')
          .split(/,\s*/)
          .map((n) => n.toLowerCase());
        for (const name of names)
          assert.ok(allowed.includes(name), `${name} not allowed: ${allowed}`);
        assert.ok(allowed.includes('authorization') && allowed.includes('content-type'));
        assert.ok(response.headers.get('access-control-max-age'));
        assert.match(response.headers.get('vary') ?? '', /origin/i);
        assert.equal(response.headers.get('access-control-allow-credentials'), null);
      }
    });

    test('answers to the allowed origin expose x-request-id, errors too', async () => {
      const results = [
        await send(gw, '/v1/chat/completions', {
          body: { model: CAPPED, messages: hi },
          headers: { origin: ORIGIN },
        }),
        await send(gw, '/v1/chat/completions', {
          body: { model: CAPPED, messages: hi, stream: true },
          headers: { origin: ORIGIN },
        }),
        await send(gw, '/v1/chat/completions', {
          body: { model: CAPPED, messages: hi },
          headers: { origin: ORIGIN, authorization: null },
        }),
        await send(gw, '/v1/models', { method: 'GET', headers: { origin: ORIGIN } }),
      ];
      assert.deepEqual(
        results.map((r) => r.status),
        [200, 200, 401, 200],
      );
      for (const result of results) {
        assert.equal(result.headers.get('access-control-allow-origin'), ORIGIN);
        const exposed = (result.headers.get('access-control-expose-headers') ?? '').split(/,\s*/);
        assert.ok(exposed.includes('x-request-id'), `expose-headers: ${exposed}`);
        assert.ok(exposed.includes('retry-after'));
        assert.match(result.headers.get('vary') ?? '', /origin/i);
      }
    });

    const others = [
      'https://evil.example',
      'https://app.example.evil.example',
      'http://app.example',
      'https://app.example:8443',
      'null',
    ];
    for (const origin of others) {
      test(`origin ${origin} gets no access-control-allow-origin`, async () => {
        const preflight = await fetch(`${gw.origin}/v1/chat/completions`, {
          method: 'OPTIONS',
          headers: {
            origin,
            'access-control-request-method': 'POST',
            'access-control-request-headers': 'authorization',
          },
        });
        await preflight.arrayBuffer();
        const actual = await send(gw, '/v1/chat/completions', {
          body: { model: CAPPED, messages: hi },
          headers: { origin },
        });
        assert.equal(actual.status, 200);
        for (const response of [preflight, actual]) {
          assert.equal(response.headers.get('access-control-allow-origin'), null);
          assert.equal(response.headers.get('access-control-allow-headers'), null);
        }
      });
    }
  });

  describe('persona limits', () => {
    /** Sends a request to the capped persona; resolves to the body the upstream received. */
    async function upstreamBody(extra, raw) {
      const id = requestId('limits');
      const body = raw ?? { model: CAPPED, messages: hi, ...extra };
      const result = await send(gw, '/v1/chat/completions', { body, id });
      assert.equal(result.status, 200, result.text.slice(0, 300));
      const seen = await theUpstreamRequest(gw, id);
      return { parsed: JSON.parse(seen.body), text: seen.body, result };
    }

    test('the fixture persona is served under its upstream model', async () => {
      const { parsed, result } = await upstreamBody({});
      assert.equal(parsed.model, 'stub/fixture/capped-model');
      assert.equal(JSON.parse(result.text).model, CAPPED);
      assert.match(parsed.messages[0].content, /^Shared fixture instructions/);
    });

    test('max_tokens above the cap is lowered to it; below it stays', async () => {
      assert.equal((await upstreamBody({ max_tokens: 5000 })).parsed.max_tokens, 256);
      assert.equal((await upstreamBody({ max_tokens: 257 })).parsed.max_tokens, 256);
      assert.equal((await upstreamBody({ max_tokens: 256 })).parsed.max_tokens, 256);
      assert.equal((await upstreamBody({ max_tokens: 100 })).parsed.max_tokens, 100);
    });

    test('max_completion_tokens above the cap is lowered to it', async () => {
      const { parsed } = await upstreamBody({ max_completion_tokens: 100_000 });
      assert.equal(parsed.max_completion_tokens, 256);
      assert.ok(!('max_tokens' in parsed) || parsed.max_tokens <= 256);
    });

    test('a request without max_tokens gets the cap, streamed or not', async () => {
      for (const stream of [false, true]) {
        const { parsed } = await upstreamBody({ stream });
        assert.equal(parsed.max_tokens, 256, `stream: ${stream}`);
      }
    });

    test('a fixed temperature becomes the default; a fixed seed without one goes', async () => {
      const { parsed } = await upstreamBody({ temperature: 1.9, seed: 42, top_p: 0.5 });
      assert.equal(parsed.temperature, 0.4);
      assert.ok(!('seed' in parsed), `seed reached the upstream: ${parsed.seed}`);
      assert.equal(parsed.top_p, 0.5, 'a parameter that is not fixed keeps the client value');
    });

    test('a fixed parameter sent as null still gets the default', async () => {
      assert.equal((await upstreamBody({ temperature: null })).parsed.temperature, 0.4);
    });

    // The cap must hold whatever form the number takes; the upstream (and the providers behind
    // Zaguan, many of which read 5e3 or 5000.0 as 5000) would otherwise honour the larger ask.
    const forms = {
      null: 'null',
      '5000.0': '5000.0',
      '5e3': '5e3',
      '1e400': '1e400',
      '2^64': '18446744073709551616',
    };
    for (const [label, raw] of Object.entries(forms)) {
      test(`the cap holds for max_tokens: ${label}`, async () => {
        const id = requestId('cap-form');
        const messages = '[{"role":"user","content":"hi"}]';
        const body = `{"model":"${CAPPED}","messages":${messages},"max_tokens":${raw}}`;
        const result = await send(gw, '/v1/chat/completions', { body, id });
        if (result.status === 400) {
          assertOpenAIError(result, 400, { param: 'max_tokens' });
          return;
        }
        assert.equal(result.status, 200);
        const seen = await theUpstreamRequest(gw, id);
        const sent = /"max_tokens":([^,}]*)/.exec(seen.body)?.[1];
        assert.ok(
          sent !== undefined && Number(sent) <= 256 && sent !== 'null',
          `max_tokens: ${raw} reached the upstream as max_tokens: ${sent} (cap 256)`,
        );
      });
    }

    test('the fixture prompt shows in no model listing and no error', async () => {
      const texts = [
        (await send(gw, '/v1/models', { method: 'GET' })).text,
        (await send(gw, '/v1/models/zaguanai%2Fe2e-capped', { method: 'GET' })).text,
        (await send(gw, '/v1/chat/completions', { body: { model: CAPPED, messages: [] } })).text,
        (
          await send(gw, '/v1/chat/completions', {
            body: { model: CAPPED, messages: hi, stream: 'x' },
          })
        ).text,
      ];
      assert.ok(texts[0].includes('e2e-capped'));
      for (const text of texts) {
        assert.ok(
          !text.includes('FIXTURE-BODY-93be') && !text.includes('FIXTURE-SHARED-7c41'),
          text,
        );
      }
    });
  });
});
