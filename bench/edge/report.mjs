// The benchmark's markdown report: the machine, one table per phase with the baselines and the
// gateway's ratios to them, the Worker's size, and the targets as met or missed.

const fixed = (value, digits) => (Number.isFinite(value) ? value.toFixed(digits) : '–');
const ms = (value) => fixed(value, 2);
const ratio = (value) => (Number.isFinite(value) ? `${value.toFixed(2)}×` : '–');
const kib = (bytes) => fixed(bytes / 1024, 1);

function table(header, rows) {
  const line = (cells) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

const LABELS = {
  stub: 'stub, direct',
  passthrough: 'baseline: body untouched',
  transform: 'baseline: no-op TransformStream',
  gateway: '**gateway**',
};

function find(rows, target, key, value) {
  return rows.find((row) => row.target === target && row[key] === value);
}

function wholeTable(results) {
  const rows = results.whole.map((row) => {
    const stub = find(results.whole, 'stub', 'connections', row.connections);
    const base = find(results.whole, 'passthrough', 'connections', row.connections);
    const perRequest = row.cpuMs / row.requests;
    const basePerRequest = base.cpuMs / base.requests;
    const direct = row.target === 'stub';
    return [
      LABELS[row.target],
      row.connections,
      ms(row.p50),
      ms(row.p99),
      fixed(row.rps, 0),
      row.errors,
      direct ? `(${fixed(perRequest, 3)})` : fixed(perRequest, 3),
      direct ? '' : ratio(perRequest / basePerRequest),
      direct ? '' : `+${ms(row.p50 - stub.p50)}`,
    ];
  });
  return table(
    [
      'target',
      'connections',
      'p50 ms',
      'p99 ms',
      'req/s',
      'errors',
      'CPU ms/request',
      'CPU vs untouched',
      'p50 added ms',
    ],
    rows,
  );
}

function streamTable(results) {
  const chunks = results.plan.streamChunks;
  const rows = results.streams.map((row) => {
    const base = find(results.streams, 'transform', 'concurrency', row.concurrency);
    const perRequest = row.cpuMs / row.done;
    const direct = row.target === 'stub';
    return [
      LABELS[row.target],
      row.concurrency,
      row.done,
      ms(row.ttfbP50),
      ms(row.ttfbP99),
      ms(row.totalP50),
      ms(row.totalP99),
      row.errors,
      direct ? `(${fixed(perRequest, 2)})` : fixed(perRequest, 2),
      direct ? '' : fixed((perRequest / chunks) * 1000, 1),
      direct ? '' : ratio(perRequest / (base.cpuMs / base.done)),
    ];
  });
  return table(
    [
      'target',
      'concurrency',
      'streams',
      'TTFB p50 ms',
      'TTFB p99 ms',
      'total p50 ms',
      'total p99 ms',
      'errors',
      'CPU ms/request',
      'CPU µs/chunk',
      'CPU vs no-op transform',
    ],
    rows,
  );
}

function heldTable(results) {
  const { slowChunks } = results.plan;
  const rows = results.held.map((row) => {
    const direct = row.target === 'stub';
    // Per stream only when all were open together; otherwise the peak holds queued work too.
    const allOpen = row.peakOpen === row.done + row.errors;
    const perStream = allOpen ? ((row.peakRssKiB - row.idleRssKiB) * 1024) / row.peakOpen : NaN;
    return [
      LABELS[row.target],
      row.done + row.errors,
      row.peakOpen,
      row.errors,
      fixed(row.totalP50 / 1000, 2),
      fixed(row.totalP99 / 1000, 2),
      fixed(row.idleRssKiB / 1024, 1),
      fixed(row.peakRssKiB / 1024, 1),
      kib(perStream),
      direct ? '' : fixed((row.cpuMs / ((row.done + row.errors) * slowChunks)) * 1000, 1),
    ];
  });
  return table(
    [
      'target',
      'streams',
      'most open at once',
      'errors',
      'total p50 s',
      'total p99 s',
      'RSS before MiB',
      'peak RSS MiB',
      'KiB per stream',
      'CPU µs/chunk',
    ],
    rows,
  );
}

function sizeTable({ size }) {
  return table(
    ['what', 'raw', 'gzipped'],
    [
      [
        'wasm (build/index_bg.wasm; gzip -9)',
        `${kib(size.wasmBytes)} KiB`,
        `${kib(size.wasmGzipBytes)} KiB`,
      ],
      [
        'JS glue (build/index.js; gzip -9)',
        `${kib(size.glueBytes)} KiB`,
        `${kib(size.glueGzipBytes)} KiB`,
      ],
      [
        '`wrangler deploy --dry-run` total upload',
        `${fixed(size.uploadKiB, 1)} KiB`,
        `**${fixed(size.uploadGzipKiB, 1)} KiB** (${fixed(size.uploadGzipKiB * 1.024, 1)} KB)`,
      ],
    ],
  );
}

/** The targets, each with what was measured against it. */
export function targets(results) {
  const { plan } = results;
  const perRequest = (row, count = row.requests ?? row.done) => row.cpuMs / count;
  const verdict = (met) => (met ? 'met' : '**missed**');
  const lines = [];

  const streamRatios = plan.streamRuns.map(({ concurrency }) => {
    const gateway = find(results.streams, 'gateway', 'concurrency', concurrency);
    const base = find(results.streams, 'transform', 'concurrency', concurrency);
    return { concurrency, value: perRequest(gateway) / perRequest(base) };
  });
  lines.push([
    'streaming CPU per chunk ≤ no-op TransformStream baseline',
    streamRatios.map((r) => `${ratio(r.value)} at concurrency ${r.concurrency}`).join(', '),
    verdict(streamRatios.every((r) => r.value <= 1)),
  ]);

  const wholeRatios = plan.wholeConcurrency.map((connections) => {
    const gateway = find(results.whole, 'gateway', 'connections', connections);
    const base = find(results.whole, 'passthrough', 'connections', connections);
    return { connections, value: perRequest(gateway) / perRequest(base) };
  });
  lines.push([
    'non-streaming CPU per request ≤ 1.5 × untouched-body baseline',
    wholeRatios.map((r) => `${ratio(r.value)} at ${r.connections}`).join(', '),
    verdict(wholeRatios.every((r) => r.value <= 1.5)),
  ]);

  const gateway1 = find(results.whole, 'gateway', 'connections', 1);
  const stub1 = find(results.whole, 'stub', 'connections', 1);
  const added = gateway1.p50 - stub1.p50;
  lines.push([
    'p50 latency added over the stub at concurrency 1 ≤ 1 ms',
    `${ms(added)} ms`,
    verdict(added <= 1),
  ]);

  const held = results.held.find((row) => row.target === 'gateway');
  lines.push([
    `${plan.slowStreams} concurrent slow streams: zero errors`,
    `${held.errors} errors`,
    verdict(held.errors === 0),
  ]);
  lines.push([
    `(not a target) all ${plan.slowStreams} open at once`,
    `${held.peakOpen} at most`,
    held.peakOpen === plan.slowStreams ? 'yes' : 'no: see the table above',
  ]);

  const gzipKB = (results.size.uploadGzipKiB * 1024) / 1000;
  lines.push([
    'Worker ≤ 300 KB gzipped (wrangler upload)',
    `${fixed(gzipKB, 1)} KB`,
    verdict(gzipKB <= 300),
  ]);
  return lines;
}

function errorsNoted(results) {
  const notes = [...results.streams, ...results.held]
    .filter((row) => row.firstError)
    .map((row) => `- ${LABELS[row.target]}: ${row.errors} failed; first: ${row.firstError}`);
  return notes.length ? `\n\nFailures seen:\n\n${notes.join('\n')}` : '';
}

function header({ machine, quick, loadBefore, loadAfter }) {
  const lines = [`# Edge benchmark, ${machine.date}`, ''];
  if (quick) {
    lines.push(
      '> **Quick run (BENCH_QUICK=1)**: short phases that check the harness; the',
      '> numbers mean little.',
      '',
    );
  }
  const workerd = machine.workerd.replace(/^workerd\s*/, '');
  const load = `${fixed(loadBefore, 2)}, ${fixed(loadAfter, 2)}`;
  lines.push(
    `- Machine: ${machine.cores} cores (${machine.cpu}), ${machine.memoryGiB} GiB`,
    `- workerd ${workerd}, ${machine.wrk}, node ${machine.node}`,
    `- Gateway: commit ${machine.commit}, the bundle \`wrangler deploy --dry-run\` would upload`,
    '- Each Worker runs in its own `workerd serve` (compatibility date 2026-04-01,',
    "  `enable_request_signal`); CPU is that process's user+system time from /proc over the",
    '  phase, divided by the requests it served. Rows marked "stub, direct" send the same',
    "  requests straight to the stub upstream; their CPU column, in parentheses, is the stub's.",
    `- Load average (1 min) before and after: ${load} (above 0: other work sharing the cores;`,
    '  CPU per request is the least affected figure, latency the most)',
    '- Command: `bash .ci/bench` (bench/edge/README.md)',
  );
  return lines.join('\n');
}

function sections(results) {
  const { plan } = results;
  const slow = `${plan.slowChunks} chunks, ${plan.slowDelayMs} ms apart`;
  return [
    '## Whole completions (not streamed)',
    `wrk, ${plan.rounds} × ${plan.wrkSeconds} s per row (latencies: the mean of the rounds'), ` +
      'one ~600-byte completion per request. "CPU vs untouched" is CPU per request over the ' +
      "untouched-body baseline's.",
    wholeTable(results),
    `## Streams: ${plan.streamChunks} chunks, ${plan.streamDelayMs} ms apart`,
    `Node client, in ${plan.rounds} rounds; TTFB is the first body byte. CPU per chunk is CPU ` +
      `per request over ${plan.streamChunks} (it includes the request's own share). The gateway ` +
      'asks the upstream for a usage chunk and drops it before the client, so its upstream ' +
      "sends one chunk more than the baselines'.",
    streamTable(results),
    `## ${plan.slowStreams} slow streams held open together: ${slow}`,
    'One connection per stream, opened 50 every 50 ms. Peak RSS is VmHWM of a workerd started ' +
      'for this phase (for the stub, the highest RSS sampled every 100 ms). KiB per stream is ' +
      'given only when all streams were open at once.',
    heldTable(results) + errorsNoted(results),
    '## Size',
    sizeTable(results),
    '## Targets (measured, never asserted)',
    table(['target', 'measured', 'result'], targets(results)),
  ];
}

export function report(results) {
  return `${[header(results), ...sections(results)].join('\n\n')}\n`;
}
