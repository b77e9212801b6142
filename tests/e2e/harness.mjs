// The end-to-end launcher: builds the Worker, starts the stub upstream, seeds a fresh local KV
// from personas/, serves the built Worker in workerd through wrangler (worker.mjs; the
// `wrangler dev` CLI with E2E_WRANGLER_CLI=1) pointed at the stub, and waits for /health. Used by
// the node suites directly, and by the Python suite and .ci/test through launch.mjs.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startStub } from '../stub/upstream.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, '../..');
export const UPSTREAM_KEY = 'sk-stub-upstream-secret-0123456789';
export const PREFIX = 'zaguanai/';
/**
 * The client keys the Worker accepts (GATEWAY_API_KEYS). The suites spread their requests over
 * many keys so that the per-key rate limit only bites where a test means it to.
 */
export const CLIENT_KEYS = Array.from(
  { length: 64 },
  (_, i) => `sk-e2e-client-${String(i).padStart(2, '0')}`,
);
/** A key of its own for the rate-limit test. */
export const RATE_LIMIT_KEY = 'sk-e2e-rate-limit-only';

const START_TIMEOUT_MS = Number(process.env.E2E_START_TIMEOUT_MS) || 90_000;
const BUILD_TIMEOUT_MS = 15 * 60_000;
const SEED_TIMEOUT_MS = 10 * 60_000;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A port nothing listens on right now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function childEnv() {
  return { ...process.env, WRANGLER_SEND_METRICS: 'false', NO_COLOR: '1', FORCE_COLOR: '0' };
}

/** Runs a command to completion with a timeout; throws with its output when it fails. */
function runStep(label, command, args, timeoutMs) {
  const result = spawnSync(command, args, {
    cwd: ROOT,
    env: childEnv(),
    encoding: 'utf8',
    timeout: timeoutMs,
    killSignal: 'SIGKILL',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (result.error || result.status !== 0) {
    const why = result.error ? result.error.message : `exit ${result.status ?? result.signal}`;
    throw new Error(`${label} failed (${why}):\n${result.stdout}\n${result.stderr}`);
  }
}

/** Keeps the last lines a child printed, to explain a failure to start. */
function tail(stream, lines) {
  stream.setEncoding('utf8');
  stream.on('data', (text) => {
    lines.push(...text.split('\n'));
    if (lines.length > 200) lines.splice(0, lines.length - 200);
  });
}

const running = new Set();

function killGroup(child, signal) {
  try {
    process.kill(-child.pid, signal);
  } catch {
    // Already gone.
  }
}

process.on('exit', () => {
  for (const child of running) killGroup(child, 'SIGKILL');
});

async function waitForHealth(origin, child, output) {
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(
        `the Worker's process exited (${child.exitCode ?? child.signalCode}):\n${output.join('\n')}`,
      );
    }
    try {
      const response = await fetch(`${origin}/health`, { signal: AbortSignal.timeout(2000) });
      if (response.status === 200) return;
      await response.arrayBuffer();
    } catch {
      // Not listening yet.
    }
    await sleep(250);
  }
  throw new Error(
    `GET /health did not answer 200 within ${START_TIMEOUT_MS} ms:\n${output.join('\n')}`,
  );
}

async function stopChild(child) {
  if (child.exitCode !== null || child.signalCode !== null) {
    running.delete(child);
    return;
  }
  const exited = new Promise((resolve) => child.once('exit', resolve));
  // The leader first, so that it stops (and reaps) its workerd processes itself.
  child.kill('SIGTERM');
  const timer = setTimeout(() => killGroup(child, 'SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
  // Whatever of the group outlived its leader goes too.
  killGroup(child, 'SIGKILL');
  running.delete(child);
}

/**
 * A copy of wrangler.toml and build/ in `dir`, without the [build] table: wrangler then serves
 * this build as it is, and neither a rebuild of build/ nor an edit of src/ during the run
 * (which would make wrangler rebuild and restart the Worker mid-request) can disturb it.
 */
function isolatedConfig(dir) {
  fs.mkdirSync(dir, { recursive: true });
  fs.cpSync(path.join(ROOT, 'build'), path.join(dir, 'build'), { recursive: true });
  const kept = [];
  let inBuild = false;
  for (const line of fs.readFileSync(path.join(ROOT, 'wrangler.toml'), 'utf8').split('\n')) {
    if (/^\s*\[/.test(line)) inBuild = /^\s*\[build\]\s*$/.test(line);
    if (!inBuild) kept.push(line);
  }
  const config = path.join(dir, 'wrangler.toml');
  fs.writeFileSync(config, kept.join('\n'));
  return config;
}

/**
 * Starts stub + Worker; `vars` adds to or overrides the Worker's vars (short timeouts for the
 * resilience suite, say). Resolves to
 * { origin, baseURL, stubOrigin, stubURL, persistDir, output, stop() }.
 */
export async function startGateway({ build = !process.env.E2E_WRANGLER_CONFIG, vars: extra = {} } = {}) {
  if (build) runStep('.ci/build', 'bash', ['.ci/build'], BUILD_TIMEOUT_MS);

  const stub = await startStub({ port: 0, key: UPSTREAM_KEY });
  const persistDir = fs.mkdtempSync(path.join(os.tmpdir(), 'persona-gateway-e2e-'));
  const emptyEnvFile = path.join(persistDir, 'empty.env');
  fs.writeFileSync(emptyEnvFile, '');
  let child = null;
  const stop = async () => {
    if (child) await stopChild(child);
    await stub.close();
    fs.rmSync(persistDir, { recursive: true, force: true });
  };

  try {
    runStep(
      'seeding local KV (cargo run --bin personas -- sync --local)',
      'cargo',
      ['run', '--quiet', '--bin', 'personas', '--', 'sync', '--local', '--persist-to', persistDir],
      SEED_TIMEOUT_MS,
    );

    const port = await freePort();
    const config =
      process.env.E2E_WRANGLER_CONFIG || isolatedConfig(path.join(persistDir, 'worker'));
    const vars = {
      ZAGUAN_BASE_URL: stub.url,
      ZAGUAN_API_KEY: UPSTREAM_KEY,
      GATEWAY_API_KEYS: [...CLIENT_KEYS, RATE_LIMIT_KEY].join(','),
      ...extra,
    };
    const logLevel = process.env.E2E_WRANGLER_LOG_LEVEL || 'warn';
    const env = { ...childEnv(), WRANGLER_LOG: logLevel };
    let command;
    let args;
    if (process.env.E2E_WRANGLER_CLI) {
      // The plain CLI, inspector included (see worker.mjs for why that is not the default).
      command = path.join(ROOT, 'node_modules/.bin/wrangler');
      args = [
        'dev',
        '--config',
        config,
        '--ip',
        '127.0.0.1',
        '--port',
        String(port),
        '--inspector-port',
        String(await freePort()),
        '--persist-to',
        persistDir,
        '--env-file',
        emptyEnvFile,
        ...Object.entries(vars).flatMap(([name, value]) => ['--var', `${name}:${value}`]),
        '--log-level',
        logLevel,
        '--show-interactive-dev-session=false',
      ];
    } else {
      command = process.execPath;
      args = [path.join(HERE, 'worker.mjs')];
      // An explicit (empty) env file keeps a developer's .dev.vars and .env out of the tests.
      env.E2E_WORKER_OPTIONS = JSON.stringify({
        config,
        envFiles: [emptyEnvFile],
        persistTo: persistDir,
        port,
        vars,
        logLevel,
      });
    }
    // stdin stays open while this process lives: worker.mjs stops when it closes.
    child = spawn(command, args, {
      cwd: ROOT,
      env,
      detached: true,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    running.add(child);
    // Lets .ci/test kill the process group even if this process is killed first.
    if (process.env.E2E_PIDFILE) fs.appendFileSync(process.env.E2E_PIDFILE, `${child.pid}\n`);
    const output = [];
    tail(child.stdout, output);
    tail(child.stderr, output);
    if (process.env.E2E_WRANGLER_LOG) {
      const log = fs.createWriteStream(process.env.E2E_WRANGLER_LOG, { flags: 'a' });
      child.stdout.on('data', (t) => log.write(t));
      child.stderr.on('data', (t) => log.write(t));
    }
    if (process.env.E2E_WRANGLER_ECHO) {
      child.stdout.on('data', (t) => process.stderr.write(t));
      child.stderr.on('data', (t) => process.stderr.write(t));
    }

    const origin = `http://127.0.0.1:${port}`;
    await waitForHealth(origin, child, output);
    return {
      origin,
      baseURL: `${origin}/v1`,
      stubOrigin: `http://127.0.0.1:${stub.port}`,
      stubURL: stub.url,
      persistDir,
      output,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

let shared = null;

/**
 * The gateway for this test process: the one named by E2E_BASE_URL and E2E_STUB_URL (started
 * once by launch.mjs for every suite), else one started here and stopped by `release()`.
 */
export function gateway() {
  if (shared) return shared;
  if (process.env.E2E_BASE_URL && process.env.E2E_STUB_URL) {
    const baseURL = process.env.E2E_BASE_URL.replace(/\/$/, '');
    const stubURL = process.env.E2E_STUB_URL.replace(/\/$/, '');
    shared = Promise.resolve({
      origin: baseURL.replace(/\/v1$/, ''),
      baseURL,
      stubOrigin: stubURL.replace(/\/v1$/, ''),
      stubURL,
      stop: async () => {},
    });
  } else {
    shared = startGateway();
  }
  return shared;
}

/** Stops the gateway `gateway()` started, if it started one. */
export async function release() {
  if (!shared) return;
  const current = await shared.catch(() => null);
  shared = null;
  if (current) await current.stop();
}

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    release().finally(() => process.exit(130));
  });
}
