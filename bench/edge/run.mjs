// The edge benchmark's runner (`bash .ci/bench` builds first, then runs this): bundles the
// gateway as `wrangler deploy --dry-run` would upload it, serves it and the two JavaScript
// baselines each in its own `workerd serve` next to the stub upstream, runs the phases and
// writes the markdown report. Everything listens on and talks to 127.0.0.1 only.
//
//   node bench/edge/run.mjs --work DIR --stub BIN --records FILE [--out FILE]
//   ... --profile TARGET:MODE   instead of the phases, a V8 CPU profile of one Worker
//                               (gateway, passthrough or transform; whole or stream)
//   BENCH_QUICK=1: a short run that only checks the harness works (its numbers mean little).

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { runStreams, runWrk } from './load.mjs';
import * as phases from './phases.mjs';
import { freePort, start, stopAll, waitUntilServing } from './processes.mjs';
import { profile, profileText } from './profile.mjs';
import { report } from './report.mjs';
import { baselineConfig, gatewayConfig, serve } from './workerd.mjs';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const WORKERD = path.join(ROOT, 'node_modules/.bin/workerd');
const WRANGLER = path.join(ROOT, 'node_modules/.bin/wrangler');

const QUICK = process.env.BENCH_QUICK === '1';
const PLAN = {
  rounds: QUICK ? 1 : 2,
  wrkSeconds: QUICK ? 1 : 4,
  wholeConcurrency: [1, 50, 200],
  streamChunks: 100,
  streamDelayMs: 1,
  streamRuns: [
    { concurrency: 1, requests: QUICK ? 6 : 60 },
    { concurrency: 50, requests: QUICK ? 50 : 400 },
  ],
  slowStreams: QUICK ? 100 : 1000,
  slowChunks: QUICK ? 20 : 100,
  slowDelayMs: 100,
};

const say = (text) => process.stderr.write(`bench: ${text}\n`);

function parseArguments(argv) {
  const usage = 'usage: run.mjs --work DIR --stub BIN --records FILE [--out FILE] [--profile T:M]';
  const options = {};
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i].replace(/^--/, '');
    if (
      !['work', 'stub', 'records', 'out', 'profile'].includes(name) ||
      argv[i + 1] === undefined
    ) {
      throw new Error(usage);
    }
    options[name] = argv[i + 1];
  }
  if (!options.work || !options.stub || !options.records) throw new Error(usage);
  return options;
}

/** The upload wrangler would make, bundled into `outdir`, and the sizes it reports. */
function dryRun(outdir) {
  const result = spawnSync(WRANGLER, ['deploy', '--dry-run', '--outdir', outdir], {
    cwd: ROOT,
    env: { ...process.env, WRANGLER_SEND_METRICS: 'false', NO_COLOR: '1', FORCE_COLOR: '0' },
    encoding: 'utf8',
    timeout: 300_000,
  });
  const output = `${result.stdout}\n${result.stderr}`;
  const match = output.match(/Total Upload:\s*([\d.]+)\s*KiB\s*\/\s*gzip:\s*([\d.]+)\s*KiB/);
  if (result.status !== 0 || !match)
    throw new Error(`wrangler deploy --dry-run failed:\n${output}`);
  return { uploadKiB: Number(match[1]), uploadGzipKiB: Number(match[2]) };
}

/** The built wasm and JS glue, raw and gzipped, and what wrangler would upload. */
function sizes(bundleDir) {
  const file = (name) => fs.readFileSync(path.join(ROOT, 'build', name));
  const gzip = (bytes) => zlib.gzipSync(bytes, { level: 9 }).length;
  const wasm = file('index_bg.wasm');
  const glue = file('index.js');
  return {
    wasmBytes: wasm.length,
    wasmGzipBytes: gzip(wasm),
    glueBytes: glue.length,
    glueGzipBytes: gzip(glue),
    ...dryRun(bundleDir),
  };
}

function machine() {
  // wrk prints its version with the usage text and exits 1: take the first line either way.
  const version = (command, args) => {
    const result = spawnSync(command, args, { encoding: 'utf8', timeout: 10_000 });
    const line = `${result.stdout ?? ''}${result.stderr ?? ''}`.split('\n')[0].trim();
    return line || 'unknown';
  };
  const cpuinfo = fs.readFileSync('/proc/cpuinfo', 'utf8');
  return {
    date: new Date().toISOString().slice(0, 10),
    cores: os.availableParallelism(),
    cpu: cpuinfo.match(/^model name\s*:\s*(.+)$/m)?.[1] ?? 'unknown',
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    workerd: version(WORKERD, ['--version']),
    wrk: version('wrk', ['--version']).replace(/\s*Copyright.*$/, ''),
    node: process.version,
    commit: version('git', ['-C', ROOT, 'describe', '--always', '--dirty']),
  };
}

/** The 1-minute load average, to tell how busy the machine was with other work. */
function loadAverage() {
  return Number(fs.readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
}

/**
 * The stub, then the Workers named in `names`, each served by its own workerd (with
 * `workerdArgs` added). The stub's record has `direct` set.
 */
async function startTargets({ work, options, bundleDir, names, workerdArgs = [] }) {
  const stubPort = await freePort();
  const stubArgs = ['--port', String(stubPort), '--max-seconds', '900'];
  const stubProcess = start('stub', options.stub, stubArgs);
  const stubOrigin = `http://127.0.0.1:${stubPort}`;
  await waitUntilServing(stubProcess, `${stubOrigin}/health`);

  const configDir = path.join(work, 'config');
  fs.mkdirSync(configDir, { recursive: true });
  const recordsFile = path.join(configDir, 'records.json');
  fs.copyFileSync(options.records, recordsFile);
  const upstreamUrl = `${stubOrigin}/v1/chat/completions`;
  const configs = {
    passthrough: (port) =>
      baselineConfig({ configDir, port, file: 'baseline-passthrough.mjs', upstreamUrl }),
    transform: (port) =>
      baselineConfig({ configDir, port, file: 'baseline-transform.mjs', upstreamUrl }),
    gateway: (port) =>
      gatewayConfig({ configDir, port, bundleDir, recordsFile, upstreamBase: `${stubOrigin}/v1` }),
  };
  const targets = [{ name: 'stub', origin: stubOrigin, process: stubProcess, direct: true }];
  for (const name of names) {
    const port = await freePort();
    const text = configs[name](port);
    targets.push(await serve({ workerd: WORKERD, configDir, name, text, port, args: workerdArgs }));
  }
  return targets;
}

async function runPhases(work, options) {
  const results = { plan: PLAN, quick: QUICK, machine: machine(), loadBefore: loadAverage() };
  say('bundling the gateway as wrangler would upload it');
  const bundleDir = path.join(work, 'upload');
  results.size = sizes(bundleDir);

  say('starting the stub and workerd: passthrough and transform baselines, gateway');
  const names = ['passthrough', 'transform', 'gateway'];
  const targets = await startTargets({ work, options, bundleDir, names });
  await phases.checkTargets(targets);
  const bodyFile = phases.writeWholeBody(path.join(work, 'whole.json'));
  say('warming up');
  await phases.warmUp(targets, bodyFile);

  results.whole = await phases.wholePhase(targets, PLAN, bodyFile);
  results.streams = await phases.streamPhase(targets, PLAN);
  results.held = await phases.heldPhase(targets, PLAN);
  results.loadAfter = loadAverage();
  stopAll();

  const markdown = report(results);
  const out = options.out ?? path.join(ROOT, 'bench/results', `edge-${results.machine.date}.md`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, markdown);
  process.stdout.write(markdown);
  say(`wrote ${path.relative(process.cwd(), out)}`);
}

/** A CPU profile of one Worker under one connection's load, printed. */
async function runProfile(work, options) {
  const [name, mode = 'whole'] = options.profile.split(':');
  if (
    !['gateway', 'passthrough', 'transform'].includes(name) ||
    !['whole', 'stream'].includes(mode)
  ) {
    throw new Error(
      `--profile takes gateway|passthrough|transform:whole|stream, not ${options.profile}`,
    );
  }
  const bundleDir = path.join(work, 'upload');
  if (name === 'gateway') dryRun(bundleDir);
  const inspectorPort = await freePort();
  const workerdArgs = [`--inspector-addr=127.0.0.1:${inspectorPort}`];
  const [, target] = await startTargets({ work, options, bundleDir, names: [name], workerdArgs });
  await phases.checkTargets([target]);
  const bodyFile = phases.writeWholeBody(path.join(work, 'whole.json'));
  const url = `${target.origin}/v1/chat/completions`;
  const { chunks, delayMs } = { chunks: PLAN.streamChunks, delayMs: PLAN.streamDelayMs };
  const streamBody = phases.requestBody({ stream: true, chunks, delayMs });
  const authorization = phases.HEADERS.authorization;
  const load = async () => {
    if (mode === 'whole') {
      return (await runWrk({ url, bodyFile, authorization, connections: 1, seconds: 4 })).requests;
    }
    const headers = phases.HEADERS;
    const run = await runStreams({
      url,
      body: streamBody,
      headers,
      concurrency: 1,
      requests: 30,
      events: chunks + 1,
    });
    return run.timings.length;
  };
  await load();
  say(`profiling ${name}, ${mode}`);
  process.stdout.write(profileText(`${name}, ${mode}`, await profile({ inspectorPort, load })));
  stopAll();
}

async function main() {
  const options = parseArguments(process.argv.slice(2));
  const work = path.resolve(options.work);
  fs.mkdirSync(work, { recursive: true });
  if (options.profile) await runProfile(work, options);
  else await runPhases(work, options);
}

main().catch((error) => {
  say(error.stack ?? String(error));
  stopAll();
  process.exit(1);
});
