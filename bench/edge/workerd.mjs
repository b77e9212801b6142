// The workerd side of the benchmark: one capnp config per Worker, written into the work folder,
// each served by its own `workerd serve` process so that /proc gives each one's CPU and memory.

import fs from 'node:fs';
import path from 'node:path';
import { start, stop, waitUntilServing } from './processes.mjs';

const HERE = path.dirname(new URL(import.meta.url).pathname);

/** As in wrangler.toml. */
const COMPATIBILITY_DATE = '2026-04-01';
const COMPATIBILITY_FLAGS = ['enable_request_signal'];

/** The client key the gateway is configured to accept; every target is sent it. */
export const CLIENT_KEY = 'bench-client-key';

const quote = (text) => JSON.stringify(text);

/** `embed` paths are read relative to the config file. */
function embed(configDir, file) {
  return `embed ${quote(path.relative(configDir, file))}`;
}

function bindingsText(bindings) {
  return bindings.map((binding) => `    ${binding},`).join('\n');
}

function configText({ port, modules, bindings, extraServices = '', extraWorkers = '' }) {
  return `using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "main", worker = .main),
    # Outbound fetch() reaches only this machine: the stub upstream on 127.0.0.1.
    (name = "internet", network = (allow = ["local"])),${extraServices}
  ],
  sockets = [(name = "http", address = "127.0.0.1:${port}", http = (), service = "main")],
);

const main :Workerd.Worker = (
  modules = [
${modules.map((module) => `    ${module},`).join('\n')}
  ],
  compatibilityDate = ${quote(COMPATIBILITY_DATE)},
  compatibilityFlags = [${COMPATIBILITY_FLAGS.map(quote).join(', ')}],
  bindings = [
${bindingsText(bindings)}
  ],
);
${extraWorkers}`;
}

/**
 * The gateway as `wrangler deploy --dry-run --outdir` bundled it (`bundleDir`: its entry module
 * and the wasm it imports), with the PERSONAS namespace served from `recordsFile`.
 */
export function gatewayConfig({ configDir, port, bundleDir, recordsFile, upstreamBase }) {
  const files = fs.readdirSync(bundleDir);
  const entry = files.find((file) => /\.m?js$/.test(file) && !file.endsWith('.map'));
  const wasm = files.filter((file) => file.endsWith('.wasm'));
  if (!entry || wasm.length === 0) {
    throw new Error(`no entry module or wasm in ${bundleDir}: ${files.join(', ')}`);
  }
  const modules = [
    `(name = ${quote(entry)}, esModule = ${embed(configDir, path.join(bundleDir, entry))})`,
    ...wasm.map(
      (file) => `(name = ${quote(file)}, wasm = ${embed(configDir, path.join(bundleDir, file))})`,
    ),
  ];
  const bindings = [
    '(name = "PERSONAS", kvNamespace = "personas")',
    `(name = "ZAGUAN_BASE_URL", text = ${quote(upstreamBase)})`,
    '(name = "ZAGUAN_API_KEY", text = "bench")',
    `(name = "GATEWAY_API_KEYS", text = ${quote(CLIENT_KEY)})`,
    '(name = "LOG_LEVEL", text = "off")',
  ];
  const extraServices = '\n    (name = "personas", worker = .personas),';
  const extraWorkers = `
const personas :Workerd.Worker = (
  modules = [
    (name = "kv.mjs", esModule = ${embed(configDir, path.join(HERE, 'kv.mjs'))}),
    (name = "records.json", json = ${embed(configDir, recordsFile)}),
  ],
  compatibilityDate = ${quote(COMPATIBILITY_DATE)},
);
`;
  return configText({ port, modules, bindings, extraServices, extraWorkers });
}

/** A plain JavaScript baseline (`bench/edge/<file>`) forwarding to `upstreamUrl`. */
export function baselineConfig({ configDir, port, file, upstreamUrl }) {
  const modules = [
    `(name = ${quote(file)}, esModule = ${embed(configDir, path.join(HERE, file))})`,
  ];
  const bindings = [`(name = "UPSTREAM_URL", text = ${quote(upstreamUrl)})`];
  return configText({ port, modules, bindings });
}

/** A `workerd serve` of `file` (with `args` added), once its /health answers. */
async function launch(workerd, file, label, origin, args) {
  const started = start(label, workerd, ['serve', ...args, file], { cwd: path.dirname(file) });
  await waitUntilServing(started, `${origin}/health`, { authorization: `Bearer ${CLIENT_KEY}` });
  return started;
}

/**
 * Writes `text` as `<name>.capnp` and serves it. The result's `process` is the running workerd
 * (its `pid` is what /proc is read for); `restart` replaces it with a fresh one.
 */
export async function serve({ workerd, configDir, name, text, port, args = [] }) {
  const file = path.join(configDir, `${name}.capnp`);
  fs.writeFileSync(file, text);
  const origin = `http://127.0.0.1:${port}`;
  const served = { name, origin, process: await launch(workerd, file, name, origin, args) };
  served.restart = async () => {
    await stop(served.process);
    served.process = await launch(workerd, file, name, origin, args);
  };
  return served;
}
