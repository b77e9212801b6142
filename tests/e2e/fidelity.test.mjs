// Byte fidelity through the real Worker: every recorded stream in tests/cases/sse, cut into
// network reads in several ways, must come out identical except for each top-level model.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CASSETTE_DIR } from '../stub/upstream.mjs';
import { gateway, release } from './harness.mjs';
import { PERSONA, chat, r0, requestId, theUpstreamRequest } from './helpers.mjs';
import { assertFaithful } from './sse.mjs';

let gw;
before(async () => {
  gw = await gateway();
});
after(release);

const cassettes = fs
  .readdirSync(CASSETTE_DIR)
  .filter((name) => name.endsWith('.sse'))
  .sort();

// One-byte reads cost a network write each: keep them to the smaller recordings.
const BYTE_BY_BYTE_LIMIT = 10_000;

test('there are recorded streams to replay', () => {
  assert.ok(cassettes.length >= 20, `found ${cassettes.length} .sse files in ${CASSETTE_DIR}`);
});

for (const name of cassettes) {
  const input = fs.readFileSync(path.join(CASSETTE_DIR, name));
  const modes = ['whole', 'lines', 'random:7:64', 'random:1234:700'];
  if (input.length <= BYTE_BY_BYTE_LIMIT) modes.push('bytes:1');

  describe(name, () => {
    for (const reads of modes) {
      test(`reads ${reads}`, async () => {
        const id = requestId('cassette');
        // The recordings carry the usage chunk a client gets when it asks for one.
        const extra = { stream_options: { include_usage: true } };
        const result = await chat(gw, r0({ cassette: name, reads }, extra), { id });
        assert.equal(result.status, 200, result.text.slice(0, 300));
        assert.equal(result.error, null, `the stream ended abnormally: ${result.error}`);
        assert.match(result.headers.get('content-type') ?? '', /^text\/event-stream/);
        const sent = await theUpstreamRequest(gw, id);
        assert.ok(
          Buffer.from(sent.sent_b64, 'base64').equals(input),
          'the stub replayed the whole file',
        );
        assertFaithful(input.toString('utf8'), result.text, PERSONA);
      });
    }
  });
}
