// A V8 CPU profile of one workerd under load, taken through its inspector (workerd serve
// --inspector-addr): self time per request, by kind of code and by function. Needs node's
// WebSocket (`node --experimental-websocket` on node 20).

/** One DevTools-protocol session over the inspector's WebSocket. */
async function connect(inspectorPort) {
  const list = await (await fetch(`http://127.0.0.1:${inspectorPort}/json`)).json();
  if (!list[0]?.webSocketDebuggerUrl) throw new Error('the inspector lists no isolate');
  const socket = new WebSocket(list[0].webSocketDebuggerUrl);
  await new Promise((resolve, reject) => {
    socket.addEventListener('open', resolve, { once: true });
    socket.addEventListener('error', reject, { once: true });
  });
  let lastId = 0;
  const waiting = new Map();
  socket.addEventListener('message', (event) => {
    const message = JSON.parse(event.data);
    waiting.get(message.id)?.(message);
    waiting.delete(message.id);
  });
  const send = (method, params = {}) =>
    new Promise((resolve) => {
      lastId += 1;
      waiting.set(lastId, resolve);
      socket.send(JSON.stringify({ id: lastId, method, params }));
    });
  return { send, close: () => socket.close() };
}

/** What kind of code a profile node's function is. */
function kind({ functionName, url }) {
  if (url.includes('.wasm')) return 'wasm (Rust)';
  if (functionName === 'wasm-to-js' || functionName === 'js-to-wasm') return 'wasm/JS crossings';
  if (functionName.startsWith('(')) return functionName;
  // Runtime APIs that JavaScript calls (stream reads, fetch) count as that JavaScript's own time.
  if (url) return 'JavaScript, with the runtime calls it makes';
  return 'runtime APIs (native)';
}

/**
 * Profiles the isolate behind `inspectorPort` while `load()` runs; `load` resolves to the count
 * of requests it made. Resolves to self time in µs per request by kind and by function.
 */
export async function profile({ inspectorPort, load, intervalUs = 100 }) {
  const session = await connect(inspectorPort);
  await session.send('Profiler.enable');
  await session.send('Profiler.setSamplingInterval', { interval: intervalUs });
  await session.send('Profiler.start');
  const requests = await load();
  const { result } = await session.send('Profiler.stop');
  session.close();

  const { nodes, samples, startTime, endTime } = result.profile;
  const perSample = (endTime - startTime) / samples.length;
  const byId = new Map(nodes.map((node) => [node.id, node]));
  const kinds = new Map();
  const functions = new Map();
  const add = (map, key, n) => map.set(key, (map.get(key) ?? 0) + n);
  for (const id of samples) {
    const frame = byId.get(id).callFrame;
    const where = frame.url ? ` ${frame.url.split('/').pop()}:${frame.lineNumber + 1}` : '';
    add(kinds, kind(frame), 1);
    add(functions, `${frame.functionName || '(anonymous)'}${where}`, 1);
  }
  const perRequest = (map) =>
    [...map]
      .map(([name, count]) => [name, (count * perSample) / requests])
      .sort((a, b) => b[1] - a[1]);
  return { requests, kinds: perRequest(kinds), functions: perRequest(functions) };
}

/** The profile as text: kinds, then the `top` functions. */
export function profileText(label, { requests, kinds, functions }, top = 30) {
  const line = ([name, us]) => `${us.toFixed(1).padStart(9)} µs/request  ${name}`;
  return [
    `${label}: ${requests} requests, self time per request (sampling slows the isolate down;`,
    'compare shares, not totals)',
    '',
    'by kind:',
    ...kinds.map(line),
    '',
    `top ${top} functions:`,
    ...functions.slice(0, top).map(line),
    '',
  ].join('\n');
}
