// The cases of tests/cases/bugs.md, end to end through the Worker, one named test each. The
// client asks for zaguanai/socrates (bugs.md's persona-a); the stub answers as `up-model`.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { gateway, release } from './harness.mjs';
import {
  PERSONA,
  assertOpenAIError,
  b64,
  chat,
  chunkEvent,
  clientKey,
  joinReads,
  r0,
  requestId,
  sdk,
  theUpstreamRequest,
} from './helpers.mjs';
import { CASSETTE_DIR } from '../stub/upstream.mjs';
import { assertFaithful, decodeChunks, decodeEvents, parseBlock, splitBlocks } from './sse.mjs';

let gw;
let client;
before(async () => {
  gw = await gateway();
  client = sdk(gw);
});
after(release);

/** Sends R0 with these upstream reads; checks a 200 stream that ended normally. */
async function stream(reads, { delay = 0, extra = {} } = {}) {
  const id = requestId('bug');
  const result = await chat(gw, r0({ reads, delay_ms: delay }, extra), { id });
  assert.equal(result.status, 200, result.text.slice(0, 300));
  assert.equal(result.error, null, `the stream ended abnormally: ${result.error}`);
  assert.match(result.headers.get('content-type') ?? '', /^text\/event-stream/);
  return { ...result, id };
}

/** The same case through the SDK: the chunks it yields. */
async function sdkChunks(reads, extra = {}) {
  const chunks = [];
  const response = await client.chat.completions.create(r0({ reads, delay_ms: 20 }, extra));
  for await (const chunk of response) chunks.push(chunk);
  return chunks;
}

function assertDone(text) {
  const events = decodeEvents(text);
  assert.ok(events.length > 0, 'some events');
  assert.equal(events[events.length - 1].data, '[DONE]', 'the stream ends with [DONE]');
}

describe('bugs.md', () => {
  test('B01: one event split across reads, inside the model value', async () => {
    const reads = [
      'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"up-mo',
      'del","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}\n',
      '\ndata: [DONE]\n\n',
    ];
    const result = await stream(reads, { delay: 60 });
    const chunks = decodeChunks(result.text);
    assert.equal(chunks.length, 1, result.text);
    assert.equal(chunks[0].model, PERSONA);
    assert.equal(chunks[0].choices[0].delta.content, 'Hi');
    assertDone(result.text);
    assertFaithful(joinReads(reads), result.text, PERSONA);
    const viaSdk = await sdkChunks(reads);
    assert.deepEqual(
      viaSdk.map((c) => [c.model, c.choices[0].delta.content]),
      [[PERSONA, 'Hi']],
    );
  });

  test('B02: a UTF-8 character split across reads', async () => {
    const reads = [
      b64(
        'data: {"object":"chat.completion.chunk","model":"up-model","choices":[{"index":0,"delta":{"content":"',
        [0xe4, 0xb8],
      ),
      b64([0xad], '文"},"finish_reason":null}]}\n\n'),
      'data: [DONE]\n\n',
    ];
    const result = await stream(reads, { delay: 60 });
    const text = new TextDecoder('utf-8', { fatal: true }).decode(result.bytes);
    assert.ok(!text.includes('\ufffd'), 'no U+FFFD');
    const chunks = decodeChunks(text);
    assert.equal(chunks.length, 1);
    assert.equal(chunks[0].choices[0].delta.content, '中文');
    assert.equal(chunks[0].model, PERSONA);
    assertDone(text);
    assertFaithful(joinReads(reads), text, PERSONA);
  });

  test('B03: CRLF endings, a CR/LF pair split across reads, a bare-CR terminator', async () => {
    const reads = [
      'data: {"object":"chat.completion.chunk",\r',
      '\ndata: "model":"up-model","choices":[{"index":0,"delta":{"content":"A"}}]}\r\n\r\n',
      'data: [DONE]\r\r',
    ];
    const result = await stream(reads, { delay: 60 });
    const events = decodeEvents(result.text);
    assert.equal(events.length, 2, `one chunk then [DONE]: ${JSON.stringify(result.text)}`);
    const chunk = JSON.parse(events[0].data);
    assert.equal(chunk.model, PERSONA);
    assert.equal(chunk.choices[0].delta.content, 'A');
    assert.equal(events[1].data, '[DONE]');
    assertFaithful(joinReads(reads), result.text, PERSONA);
  });

  test('B04: comment and keep-alive lines pass as comments', async () => {
    const reads = [
      ': ping - 2025-01-01 00:00:00.000000\r\n\r\n',
      ': OPENROUTER PROCESSING\n\n',
      chunkEvent('Hi'),
      'data: [DONE]\n\n',
    ];
    const result = await stream(reads, { delay: 20 });
    assert.doesNotMatch(result.text, /data: ?:/, 'a comment was turned into data');
    assertFaithful(joinReads(reads), result.text, PERSONA);
    const viaSdk = await sdkChunks(reads);
    assert.deepEqual(
      viaSdk.map((c) => [c.model, c.choices[0].delta.content]),
      [[PERSONA, 'Hi']],
    );
  });

  test('B05: `data:` with no space after the colon', async () => {
    const reads = [
      'data:{"id":"c1","object":"chat.completion.chunk","created":1,"model":"up-model","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}\n\n',
      'data:[DONE]\n\n',
    ];
    const result = await stream(reads, { delay: 20 });
    const chunks = decodeChunks(result.text);
    assert.equal(chunks.length, 1);
    assert.equal(chunks[0].model, PERSONA);
    assert.equal(chunks[0].choices[0].delta.content, 'Hi');
    assertDone(result.text);
    assertFaithful(joinReads(reads), result.text, PERSONA);
  });

  test('B05 variant: `data:  x` keeps the second space', async () => {
    const reads = [
      'data:  {"model":"up-model","choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n',
      'data: [DONE]\n\n',
    ];
    const result = await stream(reads);
    assert.ok(result.text.startsWith('data:  {'), JSON.stringify(result.text));
    assertFaithful(joinReads(reads), result.text, PERSONA);
  });

  /** Checks a stream whose upstream was cut: C(Hel) arrived, then an abnormal end. */
  async function assertCutOff(reads) {
    const id = requestId('b07');
    const result = await chat(gw, r0({ reads, reset_after: reads.length, delay_ms: 300 }), { id });
    assert.equal(result.status, 200);
    assert.ok(
      !result.text.includes('[DONE]'),
      `no invented [DONE]: ${JSON.stringify(result.text)}`,
    );
    const events = decodeEvents(result.text).map((e) => JSON.parse(e.data));
    assert.ok(events.length >= 1, `the first chunk arrives: ${JSON.stringify(result.text)}`);
    assert.equal(events[0].model, PERSONA);
    assert.equal(events[0].choices[0].delta.content, 'Hel');
    for (const event of events) {
      for (const choice of event.choices ?? [])
        assert.equal(choice.finish_reason ?? null, null, 'no invented finish_reason');
    }
    // bugs.md allows aborting the body or an in-band error event. Under wrangler dev (workerd
    // behind miniflare's entry worker) an errored response body reaches the client as a normal
    // end, so only the in-band event is visible here.
    const last = events[events.length - 1];
    assert.ok(
      result.error !== null ||
        (events.length === 2 && last.error && typeof last.error.message === 'string'),
      `the body must end abnormally or with an in-band error event: ${JSON.stringify(result.text)}`,
    );
    assert.notEqual(
      (await theUpstreamRequest(gw, id)).reset_at,
      null,
      'the stub did cut the stream',
    );
  }

  test('B07: an upstream cut off mid-stream is not turned into a complete answer', async () => {
    await assertCutOff([chunkEvent('Hel')]);
  });

  test('B07 variant: an upstream cut off inside an event', async () => {
    await assertCutOff([
      chunkEvent('Hel'),
      'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"up-mo',
    ]);
  });

  const finishChunk =
    'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"up-model","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n';
  const usage = '"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}';

  for (const [label, usageChunk] of [
    [
      'B08: a usage-only chunk with "choices":[]',
      `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"up-model","choices":[],${usage}}\n\n`,
    ],
    [
      'B08 variant: a usage-only chunk without "choices"',
      `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"up-model",${usage}}\n\n`,
    ],
  ]) {
    test(label, async () => {
      const reads = [finishChunk, usageChunk, 'data: [DONE]\n\n'];
      const extra = { stream_options: { include_usage: true } };
      const result = await stream(reads, { delay: 20, extra });
      const chunks = decodeChunks(result.text);
      assert.equal(chunks.length, 2);
      for (const chunk of chunks) assert.equal(chunk.model, PERSONA);
      assert.deepEqual(chunks[1].usage, {
        prompt_tokens: 9,
        completion_tokens: 2,
        total_tokens: 11,
      });
      if (usageChunk.includes('"choices":[]')) assert.deepEqual(chunks[1].choices, []);
      else assert.ok(!('choices' in chunks[1]), 'no choices key invented');
      assertDone(result.text);
      assertFaithful(joinReads(reads), result.text, PERSONA);
      const seen = await theUpstreamRequest(gw, result.id);
      assert.deepEqual(seen.json.stream_options, { include_usage: true });
      assert.equal(seen.json.messages[0].role, 'system');
    });
  }

  const midStreamError =
    'data: {"error":{"object":"error","message":"Requested token count exceeds the model\'s maximum context length","type":"BadRequestError","param":null,"code":400}}\n\n';

  for (const [label, errorEvent] of [
    ['B10: an error object arriving mid-stream', midStreamError],
    ['B10 variant: the error block preceded by `event: error`', `event: error\n${midStreamError}`],
  ]) {
    test(label, async () => {
      const reads = [chunkEvent('Hi'), errorEvent, 'data: [DONE]\n\n'];
      const result = await stream(reads, { delay: 20 });
      const events = decodeEvents(result.text);
      assert.equal(events.length, 3);
      assert.equal(JSON.parse(events[0].data).model, PERSONA);
      assert.ok(!('model' in JSON.parse(events[1].data)), 'no model added to the error event');
      assertDone(result.text);
      assertFaithful(joinReads(reads), result.text, PERSONA);

      const seen = [];
      await assert.rejects(
        (async () => {
          for await (const chunk of await client.chat.completions.create(
            r0({ reads, delay_ms: 20 }),
          ))
            seen.push(chunk);
        })(),
        (error) => {
          assert.ok(
            error instanceof OpenAI.APIError,
            `${error.constructor.name}: ${error.message}`,
          );
          assert.match(error.message, /maximum context length/);
          return true;
        },
      );
      assert.equal(seen.length, 1, 'the first chunk arrived before the error');
    });
  }

  test('B11: an upstream 401 on a streaming request comes back as 401 JSON', async () => {
    const body =
      '{"error":{"message":"Incorrect API key provided.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}';
    const started = Date.now();
    const result = await chat(
      gw,
      r0({ status: 401, headers: { 'content-type': 'application/json' }, body }),
    );
    assert.ok(Date.now() - started < 5000, 'promptly');
    assertOpenAIError(result, 401, { code: 'invalid_api_key' });
    assert.equal(result.text, body, 'the same body');
    assert.ok(!result.text.includes('data:'), 'no SSE framing');
    await assert.rejects(
      client.chat.completions.create(
        r0({ status: 401, headers: { 'content-type': 'application/json' }, body }),
      ),
      OpenAI.AuthenticationError,
    );
  });

  for (const streamed of [true, false]) {
    test(`B12: an upstream 502 with an HTML body (stream: ${streamed})`, async () => {
      const html =
        '<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>';
      const result = await chat(
        gw,
        r0(
          { status: 502, headers: { 'content-type': 'text/html' }, body: html },
          { stream: streamed },
        ),
      );
      assertOpenAIError(result, 502);
    });
  }

  test('B13: a 429 keeps retry-after, retry-after-ms and x-ratelimit-* and its body', async () => {
    const body =
      '{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}';
    const headers = {
      'content-type': 'application/json',
      'retry-after': '20',
      'retry-after-ms': '20000',
      'x-ratelimit-remaining-requests': '0',
      'x-ratelimit-limit-requests': '500',
      'x-ratelimit-reset-requests': '20s',
    };
    const result = await chat(gw, r0({ status: 429, headers, body }));
    assertOpenAIError(result, 429, { code: 'rate_limit_exceeded' });
    assert.equal(result.text, body);
    for (const name of Object.keys(headers)) {
      if (name === 'content-type') continue;
      assert.equal(result.headers.get(name), headers[name], `header ${name}`);
    }
    await assert.rejects(
      client.chat.completions.create(r0({ status: 429, headers, body })),
      OpenAI.RateLimitError,
    );
  });

  test('B15: chunks are streamed as they come, not buffered', async () => {
    const reads = [chunkEvent('A'), chunkEvent('B'), 'data: [DONE]\n\n'];
    const result = await stream(reads, { delay: 800 });
    assert.equal(result.headers.get('cache-control'), 'no-cache');
    assert.equal(result.headers.get('x-accel-buffering'), 'no');
    assert.equal(result.headers.get('content-length'), null);
    const seen = await theUpstreamRequest(gw, result.id);
    assert.equal(seen.writes.length, 3);
    const arrival = (content) => {
      let text = '';
      for (const read of result.reads) {
        text += read.bytes.toString('utf8');
        if (decodeChunks(text).some((c) => c.choices?.[0]?.delta?.content === content))
          return read.at;
      }
      return Infinity;
    };
    assert.ok(arrival('A') < seen.writes[1].at, 'A reached the client before the stub wrote B');
    assert.ok(
      arrival('B') < seen.writes[2].at,
      'B reached the client before the stub wrote [DONE]',
    );
    assertFaithful(joinReads(reads), result.text, PERSONA);
  });

  test('B16: a client that hangs up cancels the upstream request', async () => {
    const id = requestId('b16');
    const reads = [
      chunkEvent('A'),
      ...Array.from({ length: 20 }, (_, i) => chunkEvent(`more ${i}`)),
    ];
    const controller = new AbortController();
    const response = await fetch(`${gw.baseURL}/chat/completions`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-request-id': id,
        authorization: `Bearer ${clientKey()}`,
      },
      body: JSON.stringify(r0({ reads, delay_ms: 500 })),
      signal: controller.signal,
    });
    const reader = response.body.getReader();
    const first = await reader.read();
    assert.match(Buffer.from(first.value).toString(), /"content":"A"/);
    const hungUp = Date.now();
    controller.abort();
    let record;
    for (let i = 0; i < 30; i += 1) {
      [record] = await (await fetch(`${gw.stubOrigin}/__stub/requests?request_id=${id}`)).json();
      if (record.client_closed_at !== null) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.notEqual(record.client_closed_at, null, 'the upstream connection was closed');
    assert.ok(
      record.client_closed_at - hungUp < 3000,
      `closed ${record.client_closed_at - hungUp} ms after`,
    );
    assert.ok(
      record.writes.length < 10,
      `the upstream stopped early (${record.writes.length} of 21 reads sent)`,
    );
  });

  test('B17: tool_call deltas keep index 0, content null, empty and escaped arguments', async () => {
    const head =
      '{"id":"c1","object":"chat.completion.chunk","created":1,"model":"up-model","choices":[{"index":0,"delta":';
    const reads = [
      `data: ${head}{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}]}\n\n`,
      `data: ${head}{"tool_calls":[{"index":0,"function":{"arguments":"{\\"city\\":\\"Par"}}]},"finish_reason":null}]}\n\n`,
      `data: ${head}{"tool_calls":[{"index":0,"function":{"arguments":"is\\"}"}}]},"finish_reason":null}]}\n\n`,
      `data: ${head}{},"finish_reason":"tool_calls"}]}\n\n`,
      'data: [DONE]\n\n',
    ];
    const result = await stream(reads, { delay: 10 });
    assertFaithful(joinReads(reads), result.text, PERSONA);
    const chunks = decodeChunks(result.text);
    assert.equal(chunks.length, 4);
    assert.equal(chunks[0].choices[0].delta.content, null);
    assert.equal(chunks[0].choices[0].delta.tool_calls[0].function.arguments, '');
    const calls = chunks.flatMap((c) => c.choices[0].delta.tool_calls ?? []);
    for (const call of calls) assert.equal(call.index, 0);
    assert.equal(calls.map((c) => c.function.arguments).join(''), '{"city":"Paris"}');
    assert.equal(chunks[3].choices[0].finish_reason, 'tool_calls');
    const viaSdk = await sdkChunks(reads);
    assert.equal(viaSdk.length, 4);
    for (const chunk of viaSdk) assert.equal(chunk.model, PERSONA);
  });

  test('B19: a 200 KB data line in 16 KB reads comes through whole', async () => {
    const event = chunkEvent('x'.repeat(200_000));
    const bytes = Buffer.from(event + 'data: [DONE]\n\n');
    const [head, tail] = event.split('x'.repeat(200_000));
    const reads = [head, { text: 'x', repeat: 200_000 }, tail, 'data: [DONE]\n\n'];
    const id = requestId('b19');
    const result = await chat(gw, r0({ reads, rechunk: 'bytes:16384', delay_ms: 5 }), { id });
    assert.equal(result.status, 200);
    assert.equal(result.error, null, String(result.error));
    const seen = await theUpstreamRequest(gw, id);
    assert.equal(seen.writes.length, 13, 'the stub sent 13 reads of 16 KB');
    const chunks = decodeChunks(result.text);
    assert.equal(chunks.length, 1);
    assert.equal(chunks[0].model, PERSONA);
    assert.equal(chunks[0].choices[0].delta.content.length, 200_000);
    assertDone(result.text);
    assertFaithful(bytes.toString('utf8'), result.text, PERSONA);
  });

  test('B19 scale: a 2 MB data line in 1,460-byte reads comes through whole and in time', async () => {
    const event = chunkEvent('y'.repeat(2_000_000));
    const started = Date.now();
    const id = requestId('b19-scale');
    const [head, tail] = event.split('y'.repeat(2_000_000));
    const reads = [head, { text: 'y', repeat: 2_000_000 }, tail, 'data: [DONE]\n\n'];
    const result = await chat(gw, r0({ reads, rechunk: 'bytes:1460' }), { id });
    assert.equal(result.status, 200);
    assert.equal(result.error, null, String(result.error));
    const chunks = decodeChunks(result.text);
    assert.equal(chunks.length, 1);
    assert.equal(chunks[0].choices[0].delta.content.length, 2_000_000);
    assert.equal(chunks[0].model, PERSONA);
    assert.ok(Date.now() - started < 30_000, `took ${Date.now() - started} ms`);
  });
});

describe('stream framing', () => {
  test('a client that did not ask for usage gets every event but the usage-only chunk', async () => {
    const name = 'openai-gpt4o-parallel-tool-calls.sse';
    const input = fs.readFileSync(path.join(CASSETTE_DIR, name), 'utf8');
    const id = requestId('no-usage');
    const result = await chat(gw, r0({ cassette: name, reads: 'lines' }), { id });
    assert.equal(result.status, 200);
    const usageOnly = (block) => {
      const data = parseBlock(block).data;
      return (
        data !== null &&
        data.startsWith('{') &&
        JSON.parse(data).usage &&
        JSON.parse(data).choices?.length === 0
      );
    };
    const expected = splitBlocks(input).filter((block) => !usageOnly(block));
    assert.ok(expected.length < splitBlocks(input).length, 'the recording has a usage-only chunk');
    assertFaithful(expected.join(''), result.text, PERSONA);
    const seen = await theUpstreamRequest(gw, id);
    assert.deepEqual(
      seen.json.stream_options,
      { include_usage: true },
      'the gateway asked for usage itself',
    );
  });

  test('data-less event:/id:/retry: blocks are dropped; comment-only blocks pass', async () => {
    const reads = [
      'retry: 3000\n\n',
      'id: 7\n\n',
      'event: ping\n\n',
      ': keep-alive\n\n',
      chunkEvent('Hi'),
      'data: [DONE]\n\n',
    ];
    const result = await stream(reads, { delay: 10 });
    assert.equal(
      result.text,
      `: keep-alive\n\n${chunkEvent('Hi').replace('"up-model"', JSON.stringify(PERSONA))}data: [DONE]\n\n`,
    );
    const viaSdk = await sdkChunks(reads);
    assert.deepEqual(
      viaSdk.map((c) => c.choices[0].delta.content),
      ['Hi'],
    );
  });

  test('a stream that ends without a blank line gets one, so the last event is dispatched', async () => {
    const reads = [
      chunkEvent('Hi'),
      'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"up-model","choices":[]}',
    ];
    const result = await stream(reads, { delay: 10 });
    const chunks = decodeChunks(result.text);
    assert.equal(chunks.length, 2, JSON.stringify(result.text));
    assert.equal(chunks[1].model, PERSONA);
    assertFaithful(joinReads(reads), result.text, PERSONA);
  });

  test('nested and non-JSON "model" text is left alone', async () => {
    const reads = [
      'data: {"choices":[{"index":0,"delta":{"content":"say \\"model\\":\\"x\\""}}],"usage":{"model":"inner"},"model":"up-model"}\n\n',
      'data: {"object":"chat.completion.chunk","choices":[],"meta":{"model":"only-nested"}}\n\n',
      'data: not json "model":"up-model"\n\n',
      'data: ["model","up-model"]\n\n',
      'data: [DONE]\n\n',
    ];
    const result = await stream(reads, { delay: 10 });
    assertFaithful(joinReads(reads), result.text, PERSONA);
    assert.ok(result.text.includes('"usage":{"model":"inner"}'));
  });
});
