// The benchmark's child processes: started in their own process group, waited for, stopped on
// the way out whatever happens; and what /proc says of one process's CPU time and memory.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const running = new Set();

function stopGroup(child, signal) {
  try {
    process.kill(-child.pid, signal);
  } catch {
    // Already gone.
  }
}

/** Stops every child still running; safe to call more than once. */
export function stopAll() {
  for (const child of running) stopGroup(child, 'SIGKILL');
  running.clear();
}

process.on('exit', stopAll);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    stopAll();
    process.exit(130);
  });
}

/** Starts `command` in its own process group; keeps the last lines it wrote, for errors. */
export function start(label, command, args, options = {}) {
  const child = spawn(command, args, {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    ...options,
  });
  const lines = [];
  const keep = (text) => {
    lines.push(...String(text).split('\n'));
    if (lines.length > 100) lines.splice(0, lines.length - 100);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  child.on('exit', () => running.delete(child));
  running.add(child);
  // The caller's script stops these by id on its way out, should this process die first.
  if (process.env.BENCH_PIDFILE) fs.appendFileSync(process.env.BENCH_PIDFILE, `${child.pid}\n`);
  return { label, child, pid: child.pid, output: () => lines.join('\n') };
}

/** Stops one child started by `start` and waits (at most two seconds) until it is gone. */
export async function stop(started) {
  const { child } = started;
  running.delete(child);
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((resolve) => child.once('exit', resolve));
  stopGroup(child, 'SIGTERM');
  const timer = sleep(2000).then(() => stopGroup(child, 'SIGKILL'));
  await Promise.race([gone, timer]);
  await gone;
}

/** A loopback port nothing listens on right now. */
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

/** Waits until `url` answers 200, or throws with what the process wrote. */
export async function waitUntilServing(started, url, headers = {}, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (started.child.exitCode !== null) break;
    try {
      const response = await fetch(url, { headers, signal: AbortSignal.timeout(2000) });
      await response.arrayBuffer();
      if (response.ok) return;
    } catch {
      // Not listening yet.
    }
    await sleep(100);
  }
  throw new Error(`${started.label} did not start serving ${url}:\n${started.output()}`);
}

/** The clock ticks per second /proc counts CPU time in (USER_HZ; 100 on Linux). */
const TICKS_PER_SECOND = 100;

/** User plus system CPU time of the whole process (every thread), in milliseconds. */
export function cpuMs(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name may hold spaces and parentheses: count fields after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return ((utime + stime) * 1000) / TICKS_PER_SECOND;
}

/** Resident memory now and its peak over the process's life, in KiB. */
export function memoryKiB(pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name) => Number(status.match(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm'))?.[1]);
  return { rss: field('VmRSS'), peak: field('VmHWM') };
}
