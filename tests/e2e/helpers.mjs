// What the node suites share: the persona facts read from personas/, an SDK client, raw requests
// that keep every byte and its arrival time, and the stub's record of what reached it.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import OpenAI from 'openai';
import { CLIENT_KEYS, ROOT, UPSTREAM_KEY } from './harness.mjs';

export const PERSONA = 'zaguanai/socrates';
export const REQUEST_TIMEOUT_MS = 30_000;

/** The TOML header of a persona file, read just far enough for the tests. */
function readHeader(text) {
  const match = /^\+\+\+\r?\n([\s\S]*?)\r?\n\+\+\+/m.exec(text);
  if (!match) return null;
  const header = { defaults: {} };
  let table = header;
  for (const line of match[1].split(/\r?\n/)) {
    const section = /^\s*\[(\w+)\]\s*$/.exec(line);
    if (section) {
      header[section[1]] ??= {};
      table = header[section[1]];
      continue;
    }
    const pair = /^\s*([A-Za-z_][\w-]*)\s*=\s*(.+?)\s*$/.exec(line);
    if (!pair) continue;
    const raw = pair[2];
    let value = raw;
    try {
      value = JSON.parse(raw);
    } catch {
      value = raw;
    }
    table[pair[1]] = value;
  }
  return header;
}

/** Every persona in personas/: { id, header, body }, plus the shared instructions. */
export function personaFiles() {
  const dir = path.join(ROOT, 'personas');
  const personas = [];
  let shared = '';
  for (const name of fs.readdirSync(dir).sort()) {
    if (!name.endsWith('.md')) continue;
    const text = fs.readFileSync(path.join(dir, name), 'utf8');
    if (name.startsWith('_')) {
      if (name === '_shared.md') shared = text;
      continue;
    }
    const header = readHeader(text);
    if (!header || typeof header.id !== 'string') continue;
    const body = text.slice(text.indexOf('+++', 3) + 3).trim();
    personas.push({ id: header.id, header, body });
  }
  return { personas, shared };
}

export const FILES = personaFiles();
export const SOCRATES = FILES.personas.find((p) => p.id === 'socrates');
/** The first words of the shared instructions, which every system prompt starts with. */
export const SHARED_START = FILES.shared.trim().split(/\s+/).slice(0, 8).join(' ');

export function requestId(tag) {
  return `e2e-${tag}-${crypto.randomBytes(6).toString('hex')}`;
}

let keyTurn = crypto.randomInt(CLIENT_KEYS.length);

/** The next client key, in turn, so no one key meets the rate limit. */
export function clientKey() {
  keyTurn = (keyTurn + 1) % CLIENT_KEYS.length;
  return CLIENT_KEYS[keyTurn];
}

/** An SDK client; each of its requests goes out with the next client key. */
export function sdk(gw, options = {}) {
  return new OpenAI({
    baseURL: gw.baseURL,
    apiKey: clientKey(),
    maxRetries: 0,
    timeout: REQUEST_TIMEOUT_MS,
    fetch: (url, init = {}) => {
      const headers = new Headers(init.headers);
      headers.set('authorization', `Bearer ${clientKey()}`);
      return fetch(url, { ...init, headers });
    },
    ...options,
  });
}

/** R0 of bugs.md with the persona, plus the stub's instructions. */
export function r0(xStub, extra = {}) {
  return {
    model: PERSONA,
    messages: [{ role: 'user', content: 'hi' }],
    stream: true,
    ...extra,
    ...(xStub ? { x_stub: xStub } : {}),
  };
}

/**
 * Sends one request and reads the whole answer as bytes, noting when each read arrived.
 * Resolves to { status, headers, bytes, text, reads, error } (error: the body failed midway).
 */
export async function send(gw, pathname, { method = 'POST', body, headers = {}, id } = {}) {
  const init = {
    method,
    headers: { ...headers },
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  };
  if (id !== undefined) init.headers['x-request-id'] = id;
  // A client key unless the test names one; `authorization: null` sends none.
  if (!('authorization' in init.headers)) init.headers.authorization = `Bearer ${clientKey()}`;
  if (init.headers.authorization === null) delete init.headers.authorization;
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
    init.headers['content-type'] ??= 'application/json';
  }
  const response = await fetch(`${gw.origin}${pathname}`, init);
  const reads = [];
  let error = null;
  try {
    for await (const chunk of response.body ?? []) {
      reads.push({ at: Date.now(), bytes: Buffer.from(chunk) });
    }
  } catch (caught) {
    error = caught;
  }
  const bytes = Buffer.concat(reads.map((r) => r.bytes));
  const result = {
    status: response.status,
    headers: response.headers,
    bytes,
    text: bytes.toString('utf8'),
    reads,
    error,
  };
  assertNoSecret(result);
  return result;
}

export function chat(gw, body, options = {}) {
  return send(gw, '/v1/chat/completions', { ...options, body });
}

/** The upstream key must never reach a client, in a header or a body. */
export function assertNoSecret(result) {
  const headerText = [...result.headers].map(([k, v]) => `${k}: ${v}`).join('\n');
  assert.ok(
    !headerText.includes(UPSTREAM_KEY),
    'the upstream key leaked into the response headers',
  );
  assert.ok(!result.text.includes(UPSTREAM_KEY), 'the upstream key leaked into the response body');
}

/** Every request the stub saw with this x-request-id. */
export async function upstreamSaw(gw, id) {
  const url = `${gw.stubOrigin}/__stub/requests?request_id=${encodeURIComponent(id)}`;
  const response = await fetch(url, { signal: AbortSignal.timeout(5000) });
  assert.equal(response.status, 200);
  return response.json();
}

/** The one request the stub saw with this id. */
export async function theUpstreamRequest(gw, id) {
  const seen = await upstreamSaw(gw, id);
  assert.equal(
    seen.length,
    1,
    `the stub should have seen exactly one request with x-request-id ${id}`,
  );
  return seen[0];
}

/** Asserts an OpenAI error object and returns it. */
export function assertOpenAIError(result, status, { param, code, type } = {}) {
  assert.equal(result.status, status, `status (body: ${result.text.slice(0, 300)})`);
  assert.match(result.headers.get('content-type') ?? '', /^application\/json/);
  assert.doesNotMatch(result.text, /<html/i);
  const body = JSON.parse(result.text);
  assert.ok(
    body.error && typeof body.error === 'object',
    `an {"error": {...}} body: ${result.text}`,
  );
  for (const key of ['message', 'type', 'param', 'code']) {
    assert.ok(key in body.error, `error.${key} present in ${result.text}`);
  }
  assert.equal(typeof body.error.message, 'string');
  assert.ok(body.error.message.length > 0);
  assert.equal(typeof body.error.type, 'string');
  if (param !== undefined) assert.equal(body.error.param, param);
  if (code !== undefined) assert.equal(body.error.code, code);
  if (type !== undefined) assert.equal(body.error.type, type);
  return body.error;
}

/** A generated request id: present, printable ASCII, at most 128 bytes. */
export function assertSaneId(id) {
  assert.ok(typeof id === 'string' && id.length > 0, 'x-request-id present');
  assert.ok(id.length <= 128, `x-request-id at most 128 bytes: ${id}`);
  assert.match(id, /^[\x20-\x7e]+$/);
}

/** C(x) of bugs.md. */
export function chunkEvent(content, model = 'up-model') {
  return (
    `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"${model}",` +
    `"choices":[{"index":0,"delta":{"content":${JSON.stringify(content)}},"finish_reason":null}]}\n\n`
  );
}

export function b64(...parts) {
  return {
    b64: Buffer.concat(
      parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : Buffer.from(p))),
    ).toString('base64'),
  };
}

/** The upstream reads of a case, as the bytes they add up to. */
export function joinReads(reads) {
  return Buffer.concat(
    reads.map((r) =>
      typeof r === 'string' ? Buffer.from(r, 'utf8') : Buffer.from(r.b64, 'base64'),
    ),
  ).toString('utf8');
}
