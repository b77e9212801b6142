// The benchmark's phases. Each takes the targets (the stub, then the three workerd Workers)
// and the plan, and returns its rows; CPU is read from /proc for the target's own process.

import fs from 'node:fs';
import { holdStreams, runStreams, runWrk, summarize } from './load.mjs';
import { cpuMs, memoryKiB } from './processes.mjs';
import { CLIENT_KEY } from './workerd.mjs';

export const MODEL = 'zaguanai/ada-lovelace';
export const HEADERS = {
  'content-type': 'application/json',
  authorization: `Bearer ${CLIENT_KEY}`,
};

const say = (text) => process.stderr.write(`bench: ${text}\n`);
const url = (target) => `${target.origin}/v1/chat/completions`;

/** The chat request every target is sent; a stream says its shape in `x_bench`. */
export function requestBody({ stream, chunks, delayMs }) {
  const body = {
    model: MODEL,
    messages: [
      { role: 'user', content: 'In one sentence: what did the Analytical Engine compute?' },
    ],
  };
  if (stream) Object.assign(body, { stream: true, x_bench: { chunks, delay_ms: delayMs } });
  return JSON.stringify(body);
}

/** CPU time `pid` spent while `work` ran, with `work`'s result. */
async function measured(pid, work) {
  const before = cpuMs(pid);
  const result = await work();
  return { ...result, cpuMs: cpuMs(pid) - before };
}

/**
 * `run` for each target in turn, `rounds` times over, so that a change in the machine's other
 * load falls on every target alike. Each target's results, with the CPU of each.
 */
async function inRounds(targets, rounds, run) {
  const runs = new Map(targets.map((target) => [target.name, []]));
  for (let round = 0; round < rounds; round += 1) {
    for (const target of targets) {
      runs.get(target.name).push(await measured(target.process.pid, () => run(target)));
    }
  }
  return runs;
}

const total = (list, key) => list.reduce((sum, run) => sum + run[key], 0);

/** A few requests of each kind, so that JIT, caches and connection pools are warm. */
export async function warmUp(targets, bodyFile) {
  for (const target of targets) {
    const authorization = HEADERS.authorization;
    await runWrk({ url: url(target), bodyFile, authorization, connections: 8, seconds: 1 });
    const body = requestBody({ stream: true, chunks: 10, delayMs: 0 });
    await runStreams({
      url: url(target),
      body,
      headers: HEADERS,
      concurrency: 4,
      requests: 20,
      events: 11,
    });
  }
}

/** Whole completions with wrk at each concurrency: latency, throughput, CPU per request. */
export async function wholePhase(targets, plan, bodyFile) {
  const rows = [];
  for (const connections of plan.wholeConcurrency) {
    const runs = await inRounds(targets, plan.rounds, (target) => {
      say(`whole completions: ${target.name}, ${connections} connections, ${plan.wrkSeconds} s`);
      const authorization = HEADERS.authorization;
      return runWrk({
        url: url(target),
        bodyFile,
        authorization,
        connections,
        seconds: plan.wrkSeconds,
      });
    });
    for (const [name, list] of runs) {
      const requests = total(list, 'requests');
      rows.push({
        target: name,
        connections,
        requests,
        rps: requests / total(list, 'seconds'),
        errors: total(list, 'errors'),
        p50: total(list, 'p50') / list.length,
        p99: total(list, 'p99') / list.length,
        cpuMs: total(list, 'cpuMs'),
      });
    }
  }
  return rows;
}

/** Streams of `plan.streamChunks` chunks: first byte, end, CPU per request and per chunk. */
export async function streamPhase(targets, plan) {
  const rows = [];
  const body = requestBody({
    stream: true,
    chunks: plan.streamChunks,
    delayMs: plan.streamDelayMs,
  });
  for (const { concurrency, requests } of plan.streamRuns) {
    const share = Math.ceil(requests / plan.rounds);
    const runs = await inRounds(targets, plan.rounds, (target) => {
      say(`streams: ${target.name}, ${share} at concurrency ${concurrency}`);
      const events = plan.streamChunks + 1;
      return runStreams({
        url: url(target),
        body,
        headers: HEADERS,
        concurrency,
        requests: share,
        events,
      });
    });
    for (const [name, list] of runs) {
      const timings = list.flatMap((run) => run.timings);
      const failures = list.flatMap((run) => run.failures);
      const summary = summarize(timings, failures);
      rows.push({ target: name, concurrency, ...summary, cpuMs: total(list, 'cpuMs') });
    }
  }
  return rows;
}

/** Many slow streams opened together: failures, how many were open at once, peak memory. */
export async function heldPhase(targets, plan) {
  const rows = [];
  const body = requestBody({ stream: true, chunks: plan.slowChunks, delayMs: plan.slowDelayMs });
  for (const target of targets) {
    // A fresh workerd, so that its peak resident memory (VmHWM) is this phase's.
    if (!target.direct) await target.restart();
    say(`${plan.slowStreams} slow streams held together: ${target.name}`);
    const pid = target.process.pid;
    const before = memoryKiB(pid);
    let sampledPeak = before.rss;
    const run = await measured(pid, () =>
      holdStreams({
        url: url(target),
        body,
        headers: HEADERS,
        streams: plan.slowStreams,
        events: plan.slowChunks + 1,
        step: 50,
        stepMs: 50,
        timeoutMs: plan.slowChunks * plan.slowDelayMs + 60_000,
        sample: () => (sampledPeak = Math.max(sampledPeak, memoryKiB(pid).rss)),
      }),
    );
    const peak = target.direct ? sampledPeak : memoryKiB(pid).peak;
    rows.push({ target: target.name, ...run, idleRssKiB: before.rss, peakRssKiB: peak });
  }
  return rows;
}

/** One whole completion through each target, checked, so that a misconfiguration shows first. */
export async function checkTargets(targets) {
  for (const target of targets) {
    const response = await fetch(url(target), {
      method: 'POST',
      headers: HEADERS,
      body: requestBody({ stream: false }),
      signal: AbortSignal.timeout(10_000),
    });
    const text = await response.text();
    if (response.status !== 200 || !text.includes('"chat.completion"')) {
      throw new Error(`${target.name} answered ${response.status}: ${text.slice(0, 500)}`);
    }
  }
}

/** The request body wrk sends, written to a file. */
export function writeWholeBody(file) {
  fs.writeFileSync(file, requestBody({ stream: false }));
  return file;
}
