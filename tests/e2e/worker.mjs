// Runs the built Worker in workerd through wrangler's startWorker API: what `wrangler dev` does,
// with the same config, bindings and local KV, but with the DevTools inspector off. With the
// inspector on, workerd reports every chunk of every subrequest to it; streams cut into
// thousands of reads then flood it, slow the suite fourfold and make wrangler's dev proxy drop
// requests ("Your worker restarted mid-request").
//
// Started by harness.mjs with E2E_WORKER_OPTIONS (JSON); prints `ready <url>` and runs until
// stdin closes or a signal comes.

import { unstable_startWorker } from 'wrangler';

const options = JSON.parse(process.env.E2E_WORKER_OPTIONS ?? '{}');
const bindings = Object.fromEntries(
  Object.entries(options.vars ?? {}).map(([name, value]) => [name, { type: 'plain_text', value }]),
);

const worker = await unstable_startWorker({
  config: options.config,
  envFiles: options.envFiles,
  bindings,
  dev: {
    server: { hostname: '127.0.0.1', port: options.port },
    inspector: false,
    persist: options.persistTo,
    liveReload: false,
    logLevel: options.logLevel ?? 'warn',
  },
});
const url = await worker.url;
process.stdout.write(`ready ${url.origin}\n`);

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  await worker.dispose().catch(() => {});
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.resume();
