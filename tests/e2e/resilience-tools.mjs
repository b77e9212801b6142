// Tools of the resilience suite: raw requests over node:http (no decompression, so the bytes
// received can be held against the headers), polling the stub's record, the gateway's log
// lines, and the Python SDK run on one request.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import zlib from 'node:zlib';
import { ROOT } from './harness.mjs';
import { REQUEST_TIMEOUT_MS, clientKey, upstreamSaw } from './helpers.mjs';

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * POSTs `body` to the chat endpoint with node:http, which neither decompresses nor checks
 * lengths. Resolves to { status, headers, bytes, reads }.
 */
export function rawChat(gw, body, { id, acceptEncoding } = {}) {
  const headers = {
    authorization: `Bearer ${clientKey()}`,
    'content-type': 'application/json',
  };
  if (id !== undefined) headers['x-request-id'] = id;
  if (acceptEncoding !== undefined) headers['accept-encoding'] = acceptEncoding;
  return new Promise((resolve, reject) => {
    const request = http.request(
      `${gw.baseURL}/chat/completions`,
      { method: 'POST', headers, timeout: REQUEST_TIMEOUT_MS },
      (response) => {
        const reads = [];
        response.on('data', (bytes) => reads.push({ at: Date.now(), bytes }));
        response.on('error', reject);
        response.on('end', () =>
          resolve({
            status: response.statusCode,
            headers: response.headers,
            bytes: Buffer.concat(reads.map((r) => r.bytes)),
            reads,
          }),
        );
      },
    );
    request.on('timeout', () => request.destroy(new Error('raw request timed out')));
    request.on('error', reject);
    request.end(JSON.stringify(body));
  });
}

/**
 * The body a raw answer stands for, after checking that its bytes agree with its headers: a
 * content-length, if any, counts them, and a content-encoding, if any, decodes them.
 */
export function decodedBody(raw) {
  const length = raw.headers['content-length'];
  if (length !== undefined) {
    assert.equal(Number(length), raw.bytes.length, 'content-length counts the bytes received');
  }
  const encoding = (raw.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
  const decoders = {
    identity: (bytes) => bytes,
    gzip: (bytes) => zlib.gunzipSync(bytes),
    deflate: (bytes) => zlib.inflateSync(bytes),
    br: (bytes) => zlib.brotliDecompressSync(bytes),
  };
  assert.ok(encoding in decoders, `a content-encoding a client can decode: ${encoding}`);
  let decoded;
  assert.doesNotThrow(() => {
    decoded = decoders[encoding](raw.bytes);
  }, `the body decodes as content-encoding ${encoding} says`);
  return decoded;
}

/** The stub's records for `id`, once `ready(records)` holds or `ms` have passed. */
export async function stubRecords(gw, id, ready = () => true, ms = 10_000) {
  const deadline = Date.now() + ms;
  let records = await upstreamSaw(gw, id);
  while (!ready(records) && Date.now() < deadline) {
    await sleep(100);
    records = await upstreamSaw(gw, id);
  }
  return records;
}

/** Waits until the stub saw the gateway hang up on this request id's single attempt. */
export async function closedByGateway(gw, id, ms = 10_000) {
  const records = await stubRecords(
    gw,
    id,
    (seen) => seen.length > 0 && seen.every((r) => r.client_closed_at !== null),
    ms,
  );
  assert.equal(records.length, 1, `one attempt for ${id}`);
  assert.notEqual(records[0].client_closed_at, null, 'the stub saw its connection closed');
  return records[0];
}

/**
 * The gateway's JSON log line for a request id, from the Worker's output, or null when none
 * shows within `ms` (a log level that hides it, say).
 */
export async function logLine(gw, id, ms = 5000) {
  const deadline = Date.now() + ms;
  const needle = `"request_id":"${id}"`;
  for (;;) {
    for (const line of gw.output ?? []) {
      const at = line.indexOf(needle);
      if (at === -1) continue;
      const start = line.indexOf('{');
      const end = line.lastIndexOf('}');
      try {
        return JSON.parse(line.slice(start, end + 1));
      } catch {
        // A line that only mentions the id; keep looking.
      }
    }
    if (Date.now() > deadline) return null;
    await sleep(100);
  }
}

const PYTHON = path.join(ROOT, '.venv/bin/python');
export const HAVE_PYTHON = fs.existsSync(PYTHON);

const PYTHON_STREAM = `
import json, sys
import openai
base_url, api_key, request = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=30)
chunks = []
try:
    extra = {"x_stub": request.pop("x_stub")}
    stream = client.chat.completions.create(**request, extra_body=extra)
    for chunk in stream:
        chunks.append(chunk.choices[0].delta.content if chunk.choices else None)
    print(json.dumps({"raised": None, "chunks": chunks}))
except openai.APIError as error:
    print(json.dumps({"raised": type(error).__name__, "is_api_error": True,
                      "message": str(error), "body": getattr(error, "body", None),
                      "chunks": chunks}))
`;

/**
 * Streams `request` through the Python SDK. Resolves to what the script printed: the chunks it
 * yielded, and the exception it raised, if any.
 */
export function pythonStream(gw, request) {
  return new Promise((resolve, reject) => {
    const child = spawn(
      PYTHON,
      ['-c', PYTHON_STREAM, gw.baseURL, clientKey(), JSON.stringify(request)],
      { stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (text) => {
      out += text;
    });
    child.stderr.on('data', (text) => {
      err += text;
    });
    child.on('error', reject);
    child.on('close', (code) => {
      try {
        resolve(JSON.parse(out.trim().split('\n').pop()));
      } catch {
        reject(new Error(`python exited ${code}:\n${out}\n${err}`));
      }
    });
  });
}
