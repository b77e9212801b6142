// The gateway as the npm `openai` SDK sees it: chat completions (plain and streamed), what the
// upstream receives, the model list, and the SDK's error classes.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { gateway, release, UPSTREAM_KEY } from './harness.mjs';
import {
  FILES,
  PERSONA,
  SHARED_START,
  SOCRATES,
  assertOpenAIError,
  chat,
  requestId,
  sdk,
  send,
  theUpstreamRequest,
  upstreamSaw,
} from './helpers.mjs';
import { replyText } from '../stub/upstream.mjs';

let gw;
let client;
before(async () => {
  gw = await gateway();
  client = sdk(gw);
});
after(release);

const question = [{ role: 'user', content: 'What is courage?' }];

describe('chat completions through the SDK', () => {
  test('non-streaming: the reply carries the persona id and the upstream text', async () => {
    const id = requestId('sdk-plain');
    const { data, response } = await client.chat.completions
      .create({ model: PERSONA, messages: question }, { headers: { 'x-request-id': id } })
      .withResponse();
    assert.equal(data.model, PERSONA);
    assert.equal(data.object, 'chat.completion');
    assert.equal(data.choices[0].message.role, 'assistant');
    assert.equal(data.choices[0].message.content, replyText(question));
    assert.equal(data.choices[0].finish_reason, 'stop');
    assert.ok(data.usage.total_tokens > 0);
    assert.equal(response.headers.get('x-request-id'), id);
    assert.equal(data._request_id, id);
  });

  test('streaming: every chunk names the persona and the content adds up', async () => {
    const id = requestId('sdk-stream');
    const { data: stream, response } = await client.chat.completions
      .create(
        {
          model: PERSONA,
          messages: question,
          stream: true,
          stream_options: { include_usage: true },
        },
        { headers: { 'x-request-id': id } },
      )
      .withResponse();
    assert.equal(response.headers.get('x-request-id'), id);
    assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/);
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    assert.ok(chunks.length > 3, `several chunks, got ${chunks.length}`);
    for (const chunk of chunks) assert.equal(chunk.model, PERSONA);
    const text = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
    assert.equal(text, replyText(question));
    const last = chunks[chunks.length - 1];
    assert.deepEqual(last.choices, []);
    assert.ok(last.usage.total_tokens > 0, 'the usage-only chunk arrives');
  });

  test('the upstream gets the system prompt first, the upstream model, the key and the id', async () => {
    const id = requestId('sdk-upstream');
    const messages = [
      { role: 'system', content: 'Answer in one sentence.' },
      { role: 'user', content: 'Is the unexamined life worth living?' },
    ];
    const { response } = await client.chat.completions
      .create({ model: PERSONA, messages }, { headers: { 'x-request-id': id } })
      .withResponse();
    const seen = await theUpstreamRequest(gw, response.headers.get('x-request-id'));
    assert.equal(seen.method, 'POST');
    assert.equal(seen.path, '/v1/chat/completions');
    assert.equal(seen.headers.authorization, `Bearer ${UPSTREAM_KEY}`);
    assert.equal(seen.headers['x-request-id'], id);
    assert.equal(seen.json.model, SOCRATES.header.upstream_model);
    const [system, ...rest] = seen.json.messages;
    assert.equal(system.role, 'system');
    assert.ok(
      system.content.startsWith(SHARED_START),
      `system prompt starts with the shared instructions: ${JSON.stringify(system.content.slice(0, 80))}`,
    );
    assert.ok(system.content.includes('Socrates'));
    assert.deepEqual(rest, messages, "the client's own messages follow, its system message kept");
  });

  test("the persona's defaults fill in what the client left out", async () => {
    const id = requestId('sdk-defaults');
    await client.chat.completions.create(
      { model: PERSONA, messages: question },
      { headers: { 'x-request-id': id } },
    );
    const seen = await theUpstreamRequest(gw, id);
    const defaults = SOCRATES.header.defaults;
    assert.ok(Object.keys(defaults).length > 0, 'personas/socrates.md has [defaults]');
    for (const [key, value] of Object.entries(defaults)) {
      assert.deepEqual(seen.json[key], value, `default ${key}`);
    }
  });

  test("the client's own values win over the persona's defaults", async () => {
    const id = requestId('sdk-client-wins');
    const mine = { temperature: 0.15, max_tokens: 77 };
    await client.chat.completions.create(
      { model: PERSONA, messages: question, ...mine },
      { headers: { 'x-request-id': id } },
    );
    const seen = await theUpstreamRequest(gw, id);
    assert.equal(seen.json.temperature, 0.15);
    assert.equal(seen.json.max_tokens, 77);
    for (const [key, value] of Object.entries(SOCRATES.header.defaults)) {
      if (!(key in mine)) assert.deepEqual(seen.json[key], value, `default ${key} still applied`);
    }
  });

  test('tools, response_format, stream_options and unknown fields go upstream untouched', async () => {
    const id = requestId('sdk-passthrough');
    const extra = {
      tools: [
        {
          type: 'function',
          function: {
            name: 'get_weather',
            description: 'Weather in a city',
            parameters: {
              type: 'object',
              properties: { city: { type: 'string' } },
              required: ['city'],
            },
            strict: true,
          },
        },
      ],
      tool_choice: { type: 'function', function: { name: 'get_weather' } },
      parallel_tool_calls: false,
      response_format: { type: 'json_object' },
      stop: ['\n\n', 'END'],
      n: 1,
      logprobs: true,
      top_logprobs: 2,
      seed: 42,
      user: 'user-1234',
      metadata: { 'trace-id': 'abc' },
      stream_options: { include_usage: true },
      x_vendor_extension: { nested: [1, 'two', null, { deep: true }], emoji: 'héllo ✓' },
    };
    const stream = await client.chat.completions.create(
      { model: PERSONA, messages: question, stream: true, ...extra },
      { headers: { 'x-request-id': id } },
    );
    for await (const chunk of stream) assert.equal(chunk.model, PERSONA);
    const seen = await theUpstreamRequest(gw, id);
    for (const [key, value] of Object.entries(extra)) {
      assert.deepEqual(seen.json[key], value, `${key} forwarded untouched`);
    }
    assert.equal(seen.json.stream, true);
  });

  test('the bare slug `socrates` is accepted and answered as zaguanai/socrates', async () => {
    const id = requestId('sdk-bare');
    const data = await client.chat.completions.create(
      { model: 'socrates', messages: question },
      { headers: { 'x-request-id': id } },
    );
    assert.equal(data.model, PERSONA);
    const seen = await theUpstreamRequest(gw, id);
    assert.equal(seen.json.model, SOCRATES.header.upstream_model);
  });

  test('non-streaming: only the top-level model changes, every other byte is kept', async () => {
    const raw =
      '{"choices":[{"finish_reason":"stop","index":0,"message":{"content":"caf\\u00e9 \\"quoted\\" ' +
      'with a \\"model\\":\\"fake\\" inside","role":"assistant"}}],"model" : "up/model-1.0",' +
      '"usage":{"prompt_tokens":10,"completion_tokens":2.0,"total_tokens":12,"details":{"model":"nested"}},' +
      '"id":"chatcmpl-x","object":"chat.completion","created":1e9,"x_extra":[1.50,-0,null]}';
    const id = requestId('raw-body');
    const result = await chat(gw, { model: PERSONA, messages: question, x_stub: { raw } }, { id });
    assert.equal(result.status, 200);
    assert.equal(result.text, raw.replace('"up/model-1.0"', JSON.stringify(PERSONA)));
  });
});

describe('models', () => {
  const ids = FILES.personas.map((p) => `zaguanai/${p.id}`);

  test('models.list names every persona and shows no prompt', async () => {
    const page = await client.models.list();
    const listed = page.data.map((m) => m.id);
    for (const id of ids) assert.ok(listed.includes(id), `${id} listed in ${listed}`);
    for (const model of page.data) {
      assert.equal(model.object, 'model');
      assert.equal(model.owned_by, 'zaguanai');
      assert.equal(typeof model.created, 'number');
      assert.equal(typeof model.name, 'string');
      assert.equal(typeof model.description, 'string');
    }
    const result = await send(gw, '/v1/models', { method: 'GET' });
    assert.equal(result.status, 200);
    assert.equal(JSON.parse(result.text).object, 'list');
    const secrets = [SHARED_START, ...FILES.personas.map((p) => p.body.slice(0, 60))];
    for (const secret of secrets) {
      assert.ok(
        !result.text.includes(secret),
        `the model list must not show prompt text: ${secret}`,
      );
    }
    assert.ok(!result.text.includes('system_prompt'));
  });

  test('models.retrieve("zaguanai/socrates")', async () => {
    const model = await client.models.retrieve(PERSONA);
    assert.equal(model.id, PERSONA);
    assert.equal(model.object, 'model');
    assert.equal(model.owned_by, 'zaguanai');
    assert.equal(model.name, SOCRATES.header.name);
    assert.equal(model.description, SOCRATES.header.description);
  });

  for (const pathname of ['/v1/models/zaguanai/socrates', '/v1/models/zaguanai%2Fsocrates']) {
    test(`GET ${pathname}`, async () => {
      const result = await send(gw, pathname, { method: 'GET' });
      assert.equal(result.status, 200, result.text);
      assert.match(result.headers.get('content-type') ?? '', /^application\/json/);
      const model = JSON.parse(result.text);
      assert.equal(model.id, PERSONA);
      assert.equal(model.object, 'model');
      assert.ok(!result.text.includes(SHARED_START));
    });
  }

  test('an unknown model is 404 model_not_found', async () => {
    for (const pathname of ['/v1/models/zaguanai/nobody', '/v1/models/openai%2Fgpt-4o']) {
      const result = await send(gw, pathname, { method: 'GET' });
      assertOpenAIError(result, 404, { code: 'model_not_found' });
    }
    await assert.rejects(client.models.retrieve('zaguanai/nobody'), OpenAI.NotFoundError);
  });
});

describe('SDK error classes', () => {
  for (const model of ['zaguanai/nobody', 'openai/gpt-4o']) {
    test(`NotFoundError for ${model}, and nothing sent upstream`, async () => {
      const id = requestId('sdk-404');
      await assert.rejects(
        client.chat.completions.create(
          { model, messages: question },
          { headers: { 'x-request-id': id } },
        ),
        (error) => {
          assert.ok(
            error instanceof OpenAI.NotFoundError,
            `${error.constructor.name}: ${error.message}`,
          );
          assert.equal(error.status, 404);
          assert.equal(error.code, 'model_not_found');
          assert.equal(error.requestID, id);
          return true;
        },
      );
      assert.deepEqual(await upstreamSaw(gw, id), []);
    });
  }

  test('BadRequestError for messages: []', async () => {
    await assert.rejects(
      client.chat.completions.create({ model: PERSONA, messages: [] }),
      (error) => {
        assert.ok(
          error instanceof OpenAI.BadRequestError,
          `${error.constructor.name}: ${error.message}`,
        );
        assert.equal(error.param, 'messages');
        return true;
      },
    );
  });

  test('AuthenticationError for an upstream 401', async () => {
    const body = JSON.stringify({
      error: {
        message: 'Incorrect API key provided.',
        type: 'invalid_request_error',
        param: null,
        code: 'invalid_api_key',
      },
    });
    const id = requestId('sdk-401');
    await assert.rejects(
      client.chat.completions.create(
        { model: PERSONA, messages: question, x_stub: { status: 401, body } },
        { headers: { 'x-request-id': id } },
      ),
      (error) => {
        assert.ok(
          error instanceof OpenAI.AuthenticationError,
          `${error.constructor.name}: ${error.message}`,
        );
        assert.equal(error.code, 'invalid_api_key');
        return true;
      },
    );
    assert.ok((await upstreamSaw(gw, id)).length >= 1, 'the 401 came from the upstream');
  });

  test('RateLimitError for an upstream 429', async () => {
    const body = JSON.stringify({
      error: {
        message: 'Rate limit reached',
        type: 'requests',
        param: null,
        code: 'rate_limit_exceeded',
      },
    });
    const started = Date.now();
    await assert.rejects(
      client.chat.completions.create({
        model: PERSONA,
        messages: question,
        stream: true,
        x_stub: { status: 429, headers: { 'retry-after': '1' }, body },
      }),
      (error) => {
        assert.ok(
          error instanceof OpenAI.RateLimitError,
          `${error.constructor.name}: ${error.message}`,
        );
        assert.equal(error.headers.get('retry-after'), '1');
        return true;
      },
    );
    assert.ok(Date.now() - started < 10_000);
  });

  for (const stream of [false, true]) {
    test(`InternalServerError for an upstream HTML 502 (stream: ${stream})`, async () => {
      const html =
        '<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>';
      await assert.rejects(
        client.chat.completions.create({
          model: PERSONA,
          messages: question,
          stream,
          x_stub: { status: 502, headers: { 'content-type': 'text/html' }, body: html },
        }),
        (error) => {
          assert.ok(
            error instanceof OpenAI.InternalServerError,
            `${error.constructor.name}: ${error.message}`,
          );
          assert.equal(error.status, 502);
          assert.ok(!String(error.message).includes('<html'), error.message);
          return true;
        },
      );
    });
  }
});
