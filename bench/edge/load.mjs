// Load for the benchmark: wrk for whole (non-streamed) completions, and a small node client for
// streams, which times the first byte and the end of each one and checks that it came whole.

import { spawn } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';

const HERE = path.dirname(new URL(import.meta.url).pathname);

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The q-th quantile (0..1) of `values` by the nearest-rank rule; NaN when empty. */
export function quantile(values, q) {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil(q * sorted.length));
  return sorted[rank - 1];
}

/**
 * Runs wrk against `url` for `seconds` with `connections` connections, POSTing `bodyFile`.
 * Resolves to wrk's figures, latencies in milliseconds.
 */
export function runWrk({ url, bodyFile, authorization, connections, seconds }) {
  const threads = Math.min(2, connections);
  const args = [
    `-t${threads}`,
    `-c${connections}`,
    `-d${seconds}s`,
    '--timeout',
    '10s',
    '-s',
    path.join(HERE, 'wrk-post.lua'),
    url,
  ];
  return new Promise((resolve, reject) => {
    const child = spawn('wrk', args, {
      env: { ...process.env, BENCH_BODY_FILE: bodyFile, BENCH_AUTHORIZATION: authorization },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (text) => (output += text));
    child.stderr.on('data', (text) => (output += text));
    const timer = setTimeout(() => child.kill('SIGKILL'), (seconds + 30) * 1000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      const line = output.split('\n').find((text) => text.startsWith('BENCH_RESULT '));
      if (code !== 0 || !line) {
        reject(new Error(`wrk failed (exit ${code}):\n${output}`));
        return;
      }
      const result = JSON.parse(line.slice('BENCH_RESULT '.length));
      const errors = Object.values(result.errors).reduce((sum, n) => sum + n, 0);
      resolve({
        requests: result.requests,
        seconds: result.duration_us / 1e6,
        rps: result.requests / (result.duration_us / 1e6),
        errors,
        p50: result.latency_us.p50 / 1000,
        p99: result.latency_us.p99 / 1000,
      });
    });
  });
}

/**
 * One streamed request. Resolves (never rejects) to its timings in milliseconds and `error`,
 * set when the stream failed or did not end with `[DONE]` after `events` events.
 */
function streamOnce({ url, body, headers, agent, events, timeoutMs, onOpen, onClose }) {
  return new Promise((resolve) => {
    const started = performance.now();
    const result = { ttfb: Number.NaN, total: Number.NaN, error: null };
    let settled = false;
    let opened = false;
    const finish = (error) => {
      if (settled) return;
      settled = true;
      if (opened) onClose?.();
      result.error = error;
      result.total = performance.now() - started;
      resolve(result);
    };
    const request = http.request(url, { method: 'POST', agent, headers }, (response) => {
      if (response.statusCode !== 200) {
        response.resume();
        response.on('end', () => finish(`status ${response.statusCode}`));
        return;
      }
      let seen = 0;
      let previous = 0;
      let tail = '';
      response.on('data', (chunk) => {
        if (!opened) {
          opened = true;
          result.ttfb = performance.now() - started;
          onOpen?.();
        }
        // Count event ends (a blank line), including one split across two reads.
        if (previous === 0x0a && chunk[0] === 0x0a) seen += 1;
        for (let at = chunk.indexOf('\n\n'); at !== -1; at = chunk.indexOf('\n\n', at + 2)) {
          seen += 1;
        }
        previous = chunk[chunk.length - 1];
        tail = (tail + chunk.toString('latin1', Math.max(0, chunk.length - 16))).slice(-16);
      });
      response.on('end', () => {
        if (!tail.endsWith('data: [DONE]\n\n')) finish('no [DONE] at the end');
        else if (seen !== events) finish(`${seen} events, expected ${events}`);
        else finish(null);
      });
      response.on('error', (error) => finish(error.message));
    });
    request.setTimeout(timeoutMs, () => request.destroy(new Error('timed out')));
    request.on('error', (error) => finish(error.message));
    request.end(body);
  });
}

/**
 * `requests` streams over `concurrency` kept-alive connections, each connection running its
 * share one after another. Resolves to the timings of those that came whole and the reasons
 * the others failed.
 */
export async function runStreams({ url, body, headers, concurrency, requests, events }) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const timings = [];
  const failures = [];
  let next = 0;
  const worker = async () => {
    while (next < requests) {
      next += 1;
      const result = await streamOnce({ url, body, headers, agent, events, timeoutMs: 30_000 });
      if (result.error) failures.push(result.error);
      else timings.push(result);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  agent.destroy();
  return { timings, failures };
}

/** Quantiles of the timings, and the failures counted with the first reason. */
export function summarize(timings, failures) {
  const ttfb = timings.map((t) => t.ttfb);
  const total = timings.map((t) => t.total);
  return {
    done: timings.length,
    errors: failures.length,
    firstError: failures[0] ?? null,
    ttfbP50: quantile(ttfb, 0.5),
    ttfbP99: quantile(ttfb, 0.99),
    totalP50: quantile(total, 0.5),
    totalP99: quantile(total, 0.99),
  };
}

/**
 * `streams` slow streams held open together: opened in steps of `step` every `stepMs` (so the
 * listen queues keep up), one connection each. `sample` is called every 100 ms while they run.
 * Resolves to the summary plus the most that were open at once.
 */
export async function holdStreams({
  url,
  body,
  headers,
  streams,
  events,
  step,
  stepMs,
  timeoutMs,
  sample,
}) {
  const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
  let open = 0;
  let peakOpen = 0;
  const onOpen = () => {
    open += 1;
    peakOpen = Math.max(peakOpen, open);
  };
  const onClose = () => (open -= 1);
  const sampler = setInterval(sample, 100);
  const pending = [];
  for (let opened = 0; opened < streams; opened += step) {
    for (let i = opened; i < Math.min(streams, opened + step); i += 1) {
      pending.push(streamOnce({ url, body, headers, agent, events, timeoutMs, onOpen, onClose }));
    }
    await sleep(stepMs);
  }
  const results = await Promise.all(pending);
  clearInterval(sampler);
  agent.destroy();
  const timings = results.filter((r) => !r.error);
  const failures = results.filter((r) => r.error).map((r) => r.error);
  return { ...summarize(timings, failures), peakOpen };
}
