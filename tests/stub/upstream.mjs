// The offline stub upstream: speaks Zaguan's dialect (the OpenAI chat-completions wire format)
// with plain node:http and no dependencies, and records every request it receives.
//
// POST /v1/chat/completions needs `Authorization: Bearer <key>` (else OpenAI's 401). The reply
// is chosen by an extra body field `x_stub`, which the gateway forwards untouched:
//   (absent)                       a realistic chat.completion, or with "stream": true a chunk
//                                  stream (one write per chunk; usage chunk on include_usage)
//   {cassette, reads, delay_ms}    replay tests/cases/sse/<cassette>; reads: "whole" | "lines"
//                                  | "bytes:N" | "random:SEED[:MAX]" | [sizes...]
//   {reads: [...], delay_ms,       exactly these network writes; a read is a UTF-8 string,
//    content_type, rechunk}        {"b64": "..."} for raw bytes or {"text", "repeat": n};
//                                  rechunk (a reads mode) cuts their bytes anew
//   {status, headers, body}        an error (or any) reply with these headers and raw body
//   {json} | {raw, split}          a non-streamed body: this JSON, or this exact text
// Faults, combined with any of the above:
//   reset_after: n                 reset the connection after n writes
//   fail_first: {count, status,    the first `count` attempts (requests with the same
//     headers, body, reset,        x-request-id) answer this status, headers and body (default:
//     reset_after}                 an OpenAI error; "" for an empty body); with reset: true
//                                  their connection is reset before the headers, with
//                                  reset_after: n after n writes of the normal reply. Later
//                                  attempts get the rest of x_stub
//   reset_before_headers: true     reset the connection of every attempt before answering
//   hang_ms: n                     wait n ms before the response headers (ends early if the
//                                  caller hangs up)
//   stall_after: k, stall_ms: n    after k writes, pause n ms, then go on (unless hung up)
//   drip_ms: n                     send the body one byte per write, n ms apart
//   gzip: true                     content-encoding: gzip, chunked; each write is compressed
//                                  and flushed (Z_SYNC_FLUSH), so events still arrive one by one
// GET /__stub/requests?request_id=ID lists the recorded requests with that x-request-id (each
// with its `attempt` number for that id, the time of each write, the bytes sent and when the
// caller hung up, `client_closed_at`); POST /__stub/reset forgets them.
// CLI: node tests/stub/upstream.mjs --port P --key K [--exit-with PID]  (prints `listening <port>`;
// with --exit-with it stops when process PID is gone)

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const CASSETTE_DIR = path.resolve(here, '../cases/sse');

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** OpenAI's error object. */
function errorBody(message, type, code, param = null) {
  return JSON.stringify({ error: { message, type, param, code } });
}

/** A small deterministic generator (mulberry32), so a seed names one way of cutting a stream. */
export function seededRandom(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Cuts `bytes` into reads as `mode` asks: "whole", "lines" (after each LF or lone CR),
 * "bytes:N", "random:SEED[:MAX]" or an array of sizes (the rest goes in one last read).
 */
export function splitReads(bytes, mode = 'whole') {
  const reads = [];
  const cut = (sizes) => {
    let offset = 0;
    for (const size of sizes) {
      if (offset >= bytes.length) break;
      const step = Math.max(1, Math.floor(size));
      reads.push(bytes.subarray(offset, offset + step));
      offset += step;
    }
    if (offset < bytes.length) reads.push(bytes.subarray(offset));
  };
  if (Array.isArray(mode)) {
    cut(mode);
  } else if (mode === 'whole') {
    reads.push(bytes);
  } else if (mode === 'lines') {
    let start = 0;
    for (let i = 0; i < bytes.length; i += 1) {
      const lf = bytes[i] === 0x0a;
      const loneCr = bytes[i] === 0x0d && bytes[i + 1] !== 0x0a;
      if (lf || loneCr) {
        reads.push(bytes.subarray(start, i + 1));
        start = i + 1;
      }
    }
    if (start < bytes.length) reads.push(bytes.subarray(start));
  } else if (mode.startsWith('bytes:')) {
    const size = Number(mode.slice(6)) || 1;
    cut(Array.from({ length: Math.ceil(bytes.length / size) }, () => size));
  } else if (mode.startsWith('random:')) {
    const [, seed, max] = mode.split(':');
    const random = seededRandom(Number(seed) || 1);
    const limit = Number(max) || 256;
    const sizes = [];
    for (let total = 0; total < bytes.length;) {
      const size = 1 + Math.floor(random() * limit);
      sizes.push(size);
      total += size;
    }
    cut(sizes);
  } else {
    throw new Error(`unknown reads mode ${JSON.stringify(mode)}`);
  }
  return reads;
}

function lastUserText(messages) {
  const users = (Array.isArray(messages) ? messages : []).filter((m) => m && m.role === 'user');
  const content = users.length ? users[users.length - 1].content : '';
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content.map((part) => (part && part.type === 'text' ? part.text : '')).join(' ');
  }
  return '';
}

function countWords(text) {
  return String(text).split(/\s+/).filter(Boolean).length;
}

/** The reply text a realistic upstream would give, derived from the last user message. */
export function replyText(messages) {
  const asked = lastUserText(messages).trim() || 'nothing at all';
  return (
    `You asked: ${asked}. That is worth examining together. ` +
    'Before I answer, tell me what you already believe about it. ' +
    'Then we can test that belief against an example or two.'
  );
}

function usageFor(body, text) {
  const prompt = (Array.isArray(body.messages) ? body.messages : [])
    .map((m) => (typeof m?.content === 'string' ? m.content : JSON.stringify(m?.content ?? '')))
    .reduce((sum, content) => sum + countWords(content) + 4, 0);
  const completion = countWords(text);
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
  };
}

function completionId() {
  return `chatcmpl-${crypto.randomBytes(12).toString('base64url')}`;
}

const FINGERPRINT = 'fp_stub_0001';

function chatCompletion(body) {
  const text = replyText(body.messages);
  return {
    id: completionId(),
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model: body.model,
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content: text, refusal: null },
        logprobs: null,
        finish_reason: 'stop',
      },
    ],
    usage: usageFor(body, text),
    system_fingerprint: FINGERPRINT,
  };
}

/** The chunks of a realistic streamed reply, each already framed as one SSE event. */
function chatCompletionChunks(body) {
  const text = replyText(body.messages);
  const base = {
    id: completionId(),
    object: 'chat.completion.chunk',
    created: Math.floor(Date.now() / 1000),
    model: body.model,
    system_fingerprint: FINGERPRINT,
  };
  const chunk = (delta, finish = null, extra = {}) =>
    `data: ${JSON.stringify({
      ...base,
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
      ...extra,
    })}\n\n`;
  const events = [chunk({ role: 'assistant', content: '', refusal: null })];
  for (const word of text.match(/\S+\s*/g) ?? []) events.push(chunk({ content: word }));
  events.push(chunk({}, 'stop'));
  if (body.stream_options && body.stream_options.include_usage === true) {
    events.push(
      `data: ${JSON.stringify({ ...base, choices: [], usage: usageFor(body, text) })}\n\n`,
    );
  }
  events.push('data: [DONE]\n\n');
  return events.map((event) => Buffer.from(event, 'utf8'));
}

function readsFromSpec(items) {
  return items.map((item) => {
    if (typeof item === 'string') return Buffer.from(item, 'utf8');
    if (item && typeof item.b64 === 'string') return Buffer.from(item.b64, 'base64');
    if (item && typeof item.text === 'string')
      return Buffer.from(item.text.repeat(item.repeat ?? 1), 'utf8');
    throw new Error('each read is a string, {"b64": "..."} or {"text": "...", "repeat": n}');
  });
}

function loadCassette(name) {
  if (
    typeof name !== 'string' ||
    name.includes('/') ||
    name.includes('\\') ||
    name.startsWith('.')
  ) {
    throw new Error('cassette must be a plain file name in tests/cases/sse');
  }
  return fs.readFileSync(path.join(CASSETTE_DIR, name));
}

/** Resolves after `ms`, or as soon as the caller hangs up. */
function pause(res, ms) {
  if (res.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      res.off('close', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    res.on('close', done);
  });
}

/** Resets the connection (a TCP RST where node can send one), noting when. */
function resetConnection(res, record) {
  record.reset_at = Date.now();
  if (res.socket?.resetAndDestroy) res.socket.resetAndDestroy();
  else res.socket?.destroy();
}

/**
 * A gzip stream cut at each write: `chunk` compresses one read and flushes it (Z_SYNC_FLUSH), so
 * a decoder gets that read whole; `end` gives the trailer.
 */
function gzipWriter() {
  const gzip = zlib.createGzip();
  const out = [];
  gzip.on('data', (bytes) => out.push(bytes));
  const take = () => Buffer.concat(out.splice(0, out.length));
  const settled = () => new Promise((resolve) => setImmediate(resolve));
  return {
    chunk: (bytes) =>
      new Promise((resolve) => {
        gzip.write(bytes);
        gzip.flush(zlib.constants.Z_SYNC_FLUSH, () => settled().then(() => resolve(take())));
      }),
    end: () =>
      new Promise((resolve) => {
        gzip.once('end', () => resolve(take()));
        gzip.end();
      }),
  };
}

/**
 * Writes `reads` one network write each, `delayMs` apart, noting when each left in `record`.
 * With `resetAfter`, destroys the socket after that many reads instead of ending the body;
 * with `stallAfter`, pauses `stallMs` after that many; `dripMs` sends one byte per write;
 * `gzip` compresses each write (`record.sent_b64` keeps the bytes before compression).
 */
async function sendReads(
  res,
  record,
  reads,
  {
    delayMs = 0,
    resetAfter = null,
    stallAfter = null,
    stallMs = 0,
    dripMs = null,
    gzip = false,
  } = {},
) {
  if (dripMs !== null) {
    reads = splitReads(Buffer.concat(reads), 'bytes:1');
    delayMs = dripMs;
  }
  const encoder = gzip ? gzipWriter() : null;
  const sent = [];
  const note = () => {
    record.sent_b64 = Buffer.concat(sent).toString('base64');
  };
  const write = (bytes) => new Promise((resolve) => res.write(bytes, () => resolve()));
  for (let i = 0; i < reads.length; i += 1) {
    if (resetAfter !== null && i >= resetAfter) break;
    if (i > 0 && delayMs > 0) await sleep(delayMs);
    if (stallAfter !== null && i === stallAfter && stallMs > 0) {
      record.stalled_at = Date.now();
      await pause(res, stallMs);
    }
    if (res.destroyed || record.client_closed_at !== null) return;
    const wire = encoder ? await encoder.chunk(reads[i]) : reads[i];
    record.writes.push({ at: Date.now(), bytes: reads[i].length, wire_bytes: wire.length });
    sent.push(reads[i]);
    note();
    await write(wire);
    // Let the bytes leave before the next write, so they tend to arrive as separate reads.
    if (delayMs === 0) await new Promise((resolve) => setImmediate(resolve));
  }
  if (resetAfter !== null) {
    // Wait before the reset: a reset can discard bytes the peer has not read yet.
    await sleep(Math.max(delayMs, 200));
    resetConnection(res, record);
    return;
  }
  if (stallAfter !== null && stallAfter >= reads.length && stallMs > 0) {
    record.stalled_at = Date.now();
    await pause(res, stallMs);
    if (res.destroyed || record.client_closed_at !== null) return;
  }
  if (encoder) {
    const trailer = await encoder.end();
    if (res.destroyed || record.client_closed_at !== null) return;
    await write(trailer);
  }
  res.end();
}

/** The body of a failed attempt: the one asked for, else an OpenAI error naming the attempt. */
function failureBody(fault, attempt, status) {
  if (fault.body === undefined) {
    return errorBody(
      `stub: attempt ${attempt} fails with ${status} (fail_first ${fault.count})`,
      status === 429 ? 'requests' : 'server_error',
      status === 429 ? 'rate_limit_exceeded' : 'stub_fail_first',
    );
  }
  return typeof fault.body === 'string' ? fault.body : JSON.stringify(fault.body);
}

/** The fail_first fault when it applies to this attempt, else null. */
function failingNow(spec, record) {
  const fault = spec.fail_first;
  if (!fault || typeof fault !== 'object') return null;
  return record.attempt <= (Number(fault.count) || 0) ? fault : null;
}

/**
 * The faults that strike before the response headers. Resolves to true when the attempt has
 * been dealt with (failed, reset or abandoned by the caller).
 */
async function faultBeforeHeaders(res, record, spec) {
  const fault = failingNow(spec, record);
  if (fault && fault.reset_after === undefined) {
    if (fault.reset === true) {
      resetConnection(res, record);
      return true;
    }
    const status = Number(fault.status) || 500;
    const text = failureBody(fault, record.attempt, status);
    const headers = Object.fromEntries(
      Object.entries(fault.headers ?? {}).map(([name, value]) => [name.toLowerCase(), value]),
    );
    headers['content-type'] ??= text === '' ? 'text/plain' : guessType(text);
    res.writeHead(status, headers);
    await sendReads(res, record, [Buffer.from(text, 'utf8')]);
    return true;
  }
  if (spec.reset_before_headers === true) {
    resetConnection(res, record);
    return true;
  }
  const hang = Number(spec.hang_ms) || 0;
  if (hang > 0) {
    record.hung_at = Date.now();
    await pause(res, hang);
    if (res.destroyed || record.client_closed_at !== null) return true;
  }
  return false;
}

async function reply(req, res, record, key) {
  const auth = req.headers.authorization ?? '';
  if (auth !== `Bearer ${key}`) {
    res.writeHead(401, { 'content-type': 'application/json' });
    res.end(errorBody('Incorrect API key provided.', 'invalid_request_error', 'invalid_api_key'));
    return;
  }

  const body = record.json;
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    res.writeHead(400, { 'content-type': 'application/json' });
    res.end(
      errorBody('We could not parse the JSON body of your request.', 'invalid_request_error', null),
    );
    return;
  }
  const spec = body.x_stub && typeof body.x_stub === 'object' ? body.x_stub : {};
  if (await faultBeforeHeaders(res, record, spec)) return;
  const options = {
    delayMs: Number(spec.delay_ms) || 0,
    resetAfter: spec.reset_after ?? null,
    stallAfter: spec.stall_after ?? null,
    stallMs: Number(spec.stall_ms) || 0,
    dripMs: spec.drip_ms === undefined ? null : Number(spec.drip_ms) || 0,
    gzip: spec.gzip === true,
  };
  const midBody = failingNow(spec, record);
  if (midBody && midBody.reset_after !== undefined) {
    options.resetAfter = Number(midBody.reset_after) || 0;
  }
  const headers = Object.fromEntries(
    Object.entries(spec.headers ?? {}).map(([name, value]) => [name.toLowerCase(), value]),
  );
  if (options.gzip) headers['content-encoding'] = 'gzip';
  const status = spec.status ?? 200;

  if (spec.body !== undefined) {
    const text = typeof spec.body === 'string' ? spec.body : JSON.stringify(spec.body);
    headers['content-type'] ??= guessType(text);
    res.writeHead(status, headers);
    await sendReads(res, record, [Buffer.from(text, 'utf8')], options);
    return;
  }
  if (spec.json !== undefined || spec.raw !== undefined) {
    const text = spec.raw !== undefined ? String(spec.raw) : JSON.stringify(spec.json);
    headers['content-type'] ??= spec.content_type ?? 'application/json';
    res.writeHead(status, headers);
    await sendReads(
      res,
      record,
      splitReads(Buffer.from(text, 'utf8'), spec.split ?? 'whole'),
      options,
    );
    return;
  }

  let reads = null;
  if (spec.cassette !== undefined) {
    reads = splitReads(loadCassette(spec.cassette), spec.reads ?? 'whole');
  } else if (Array.isArray(spec.reads)) {
    reads = readsFromSpec(spec.reads);
  }
  if (reads !== null && spec.rechunk !== undefined) {
    reads = splitReads(Buffer.concat(reads), spec.rechunk);
  }
  if (reads !== null) {
    headers['content-type'] ??= spec.content_type ?? 'text/event-stream; charset=utf-8';
    res.writeHead(status, { 'cache-control': 'no-cache', ...headers });
    await sendReads(res, record, reads, options);
    return;
  }

  if (body.stream === true) {
    res.writeHead(status, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      ...headers,
    });
    await sendReads(res, record, chatCompletionChunks(body), options);
    return;
  }
  headers['content-type'] ??= 'application/json';
  res.writeHead(status, headers);
  await sendReads(
    res,
    record,
    [Buffer.from(JSON.stringify(chatCompletion(body)), 'utf8')],
    options,
  );
}

function guessType(text) {
  try {
    JSON.parse(text);
    return 'application/json';
  } catch {
    return /^\s*</.test(text) ? 'text/html' : 'text/plain';
  }
}

function sendJson(res, status, value) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(value));
}

/**
 * Starts the stub on 127.0.0.1. Resolves to { port, url, server, requests, close() }.
 * `url` ends in /v1, ready to be the gateway's ZAGUAN_BASE_URL.
 */
export async function startStub({ port = 0, key = 'sk-stub-upstream-secret-0123456789' } = {}) {
  const requests = [];
  // Attempts seen so far per x-request-id, for fail_first.
  const attempts = new Map();
  const server = http.createServer((req, res) => {
    req.socket.setNoDelay(true);
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://stub');
      if (url.pathname === '/__stub/requests' && req.method === 'GET') {
        const id = url.searchParams.get('request_id');
        const seen =
          id === null ? requests : requests.filter((r) => r.headers['x-request-id'] === id);
        sendJson(res, 200, seen);
        return;
      }
      if (url.pathname === '/__stub/reset' && req.method === 'POST') {
        requests.length = 0;
        attempts.clear();
        sendJson(res, 200, { ok: true });
        return;
      }
      if (url.pathname === '/__stub/health') {
        sendJson(res, 200, { status: 'ok' });
        return;
      }

      const raw = Buffer.concat(chunks).toString('utf8');
      let json = null;
      try {
        json = JSON.parse(raw);
      } catch {
        json = null;
      }
      const id = req.headers['x-request-id'] ?? '';
      attempts.set(id, (attempts.get(id) ?? 0) + 1);
      const record = {
        attempt: attempts.get(id),
        method: req.method,
        path: url.pathname,
        query: url.search,
        headers: req.headers,
        body: raw,
        json,
        received_at: Date.now(),
        writes: [],
        sent_b64: '',
        finished_at: null,
        client_closed_at: null,
        reset_at: null,
        hung_at: null,
        stalled_at: null,
      };
      requests.push(record);
      res.on('finish', () => {
        record.finished_at = Date.now();
      });
      res.on('close', () => {
        if (record.finished_at === null && record.reset_at === null)
          record.client_closed_at = Date.now();
      });

      if (url.pathname !== '/v1/chat/completions') {
        sendJson(
          res,
          404,
          JSON.parse(
            errorBody(`Unknown path ${url.pathname}`, 'invalid_request_error', 'not_found'),
          ),
        );
        return;
      }
      if (req.method !== 'POST') {
        sendJson(
          res,
          405,
          JSON.parse(errorBody('Use POST.', 'invalid_request_error', 'method_not_allowed')),
        );
        return;
      }
      reply(req, res, record, key).catch((error) => {
        if (!res.headersSent) {
          sendJson(
            res,
            500,
            JSON.parse(errorBody(`stub: ${error.message}`, 'stub_error', 'stub_error')),
          );
        } else {
          res.destroy();
        }
      });
    });
  });
  server.keepAliveTimeout = 5000;
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  const actual = server.address().port;
  return {
    port: actual,
    url: `http://127.0.0.1:${actual}/v1`,
    server,
    requests,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}

function parseArgs(argv) {
  const args = { port: 8788, key: 'sk-stub-upstream-secret-0123456789', exitWith: null };
  for (let i = 0; i < argv.length; i += 1) {
    if (argv[i] === '--port') args.port = Number(argv[(i += 1)]);
    else if (argv[i] === '--key') args.key = argv[(i += 1)];
    else if (argv[i] === '--exit-with') args.exitWith = Number(argv[(i += 1)]);
    else
      throw new Error(
        `unknown argument ${argv[i]} (usage: upstream.mjs --port P --key K [--exit-with PID])`,
      );
  }
  return args;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = parseArgs(process.argv.slice(2));
  const stub = await startStub(args);
  process.stdout.write(`listening ${stub.port}\n`);
  const stop = () => stub.close().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  if (args.exitWith) {
    // Stops when the process that started it is gone, however that one ended.
    setInterval(() => {
      try {
        process.kill(args.exitWith, 0);
      } catch {
        stop();
      }
    }, 1000).unref();
  }
}
