// The security suite's battery of malformed requests: a generator of cases, each with the answer
// it must get, and the means to send them: fetch for what fetch can send, a raw socket for what
// it refuses (control characters in headers, TRACE, methods workerd does not know). Also an
// instance whose Worker log is kept whole (the harness keeps only its last 200 lines), which the
// security, secrets and observability suites read.

import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { CLIENT_KEYS, UPSTREAM_KEY, startGateway } from './harness.mjs';
import { PERSONA } from './helpers.mjs';
const MAX_BODY = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// The answers a case may expect.

/** A 4xx OpenAI error from the Worker: status, code, param (exact, or a list of accepted). */
function refused(status, code, param, mention) {
  return { kind: 'error', status, code, param, mention };
}
const badJson = (mention = /JSON/) => refused(400, 'invalid_json', null, mention);
const notObject = () => badJson(/object/);
const notUtf8 = () => badJson(/UTF-8/);
const badParam = (param, mention) => refused(400, 'invalid_parameter', param, mention);
const duplicate = (param) => refused(400, 'duplicate_key', param, new RegExp(`\`${param}\``));
const badKey = () => refused(401, 'invalid_api_key', null, /API key/);
const tooLarge = () => refused(413, 'request_too_large', null, /1048576 bytes/);
const noModel = () => refused(404, 'model_not_found', 'model', /does not exist/);
const noPath = () => refused(404, 'unknown_url', null, /Invalid URL/);
const noMethod = (allow) => ({ ...refused(405, 'method_not_allowed', null, /not allowed/), allow });
/**
 * workerd's HTTP parser answers before the Worker runs: 400 for a header it cannot parse, 501
 * (RFC 9110, 15.6.2) for a method it does not know.
 */
const runtimeRefusal = (status = 400) => ({ kind: 'runtime', status });
/**
 * A value of `field` (raw JSON text) that the README does not list among the gateway's 400s:
 * either a 400 naming the field, or the upstream gets the client's bytes as they were, so that it
 * can judge them. Never a value silently made valid.
 */
const refusedOrForwarded = (field, raw) => ({
  ...badParam([field, `${field}.include_usage`], new RegExp(field)),
  orForwarded: { field, text: `"${field}":${raw}` },
});
/** Valid JSON the gateway passes on by design (README, "forwards every other field"). */
const forwarded = (text) => ({ kind: 'forwarded', text });

// ---------------------------------------------------------------------------------------------
// Bodies.

const HI = [{ role: 'user', content: 'hi' }];
/** A chat body with `extra` members after model and messages, as JSON text. */
const chat = (extra = {}) => JSON.stringify({ model: PERSONA, messages: HI, ...extra });
/** A chat body with one member's value written as raw JSON text. */
const withRaw = (name, rawValue) => {
  const base = { model: PERSONA, messages: HI };
  const members = Object.entries(base)
    .filter(([key]) => key !== name)
    .map(([key, value]) => `${JSON.stringify(key)}:${JSON.stringify(value)}`);
  return `{${[`${JSON.stringify(name)}:${rawValue}`, ...members].join(',')}}`;
};
const messagesRaw = (raw) => `{"model":${JSON.stringify(PERSONA)},"messages":${raw}}`;
const nested = (depth, open = '[', close = ']', inner = '') =>
  `${open.repeat(depth)}${inner}${close.repeat(depth)}`;

/** Values of every JSON type, as raw text. */
const VALUES = {
  null: 'null',
  true: 'true',
  false: 'false',
  zero: '0',
  negative: '-1',
  fraction: '1.5',
  'huge number': '1e400',
  'empty string': '""',
  string: '"text"',
  'empty array': '[]',
  array: '[1,"a"]',
  'empty object': '{}',
  object: '{"a":1}',
};
const valuesExcept = (...names) => Object.entries(VALUES).filter(([name]) => !names.includes(name));

// ---------------------------------------------------------------------------------------------
// The generator.

/**
 * Every case: { group, name, request, expect }. `request` is { method, path, headers, body,
 * chunked, auth } for fetch, or { raw } (bytes, with `{{ID}}` where the request id goes) for a
 * raw socket. Requests carry a valid client key unless `auth` says otherwise.
 */
export function battery() {
  const cases = [];
  const add = (group, name, request, expect) => cases.push({ group, name, request, expect });
  const post = (body, extra = {}) => ({
    method: 'POST',
    path: '/v1/chat/completions',
    body,
    ...extra,
  });

  // Truncated JSON: every cut of a valid body.
  const whole = chat({ stream: false, temperature: 0.5 });
  for (let cut = 0; cut < whole.length; cut += 1) {
    add('truncated JSON', `cut after ${cut} bytes`, post(whole.slice(0, cut)), badJson());
  }

  // Invalid JSON of every other kind, and JSON that is not an object.
  const syntax = {
    'only white space': ' \n\t ',
    'a lone brace': '{',
    'a closing brace': '}',
    'nested braces': '{{}}',
    'single quotes': "{'model':'zaguanai/socrates'}",
    'a trailing comma': `${chat().slice(0, -1)},}`,
    'a missing comma': '{"model":"zaguanai/socrates" "messages":[]}',
    'unquoted keys': '{model:"zaguanai/socrates"}',
    'a line comment': `${chat()}// note`,
    'a block comment': `/* note */${chat()}`,
    NaN: withRaw('temperature', 'NaN'),
    Infinity: withRaw('temperature', 'Infinity'),
    'a misspelt literal': withRaw('stream', 'tru'),
    'a capitalised literal': withRaw('stream', 'True'),
    'two objects': `${chat()}${chat()}`,
    'trailing text': `${chat()} and more`,
    'a raw control character in a string': '{"model":"zaguan\u0001ai/socrates","messages":[]}',
    'a raw new line in a string': '{"model":"zaguanai/\nsocrates","messages":[]}',
    'an unknown escape': '{"model":"\\x41","messages":[]}',
    'a short \\u escape': '{"model":"\\u12","messages":[]}',
    'an unterminated string': '{"model":"zaguanai/socrates',
    'a leading zero': withRaw('temperature', '01'),
    'a plus sign': withRaw('temperature', '+1'),
    'a bare fraction': withRaw('temperature', '.5'),
    'a hex number': withRaw('max_tokens', '0x10'),
    'a dangling point': withRaw('temperature', '1.'),
    'a lone minus': withRaw('temperature', '-'),
    'a byte order mark': `\ufeff${chat()}`,
    'a no-break space as white space': `{\u00a0"model":"zaguanai/socrates","messages":[]}`,
    'an array of the body': `[${chat()}]`,
  };
  for (const [name, body] of Object.entries(syntax))
    add('invalid JSON', name, post(body), badJson());
  const notObjects = {
    null: 'null',
    'an empty array': '[]',
    'a string': '"zaguanai/socrates"',
    'a number': '0',
    true: 'true',
  };
  for (const [name, body] of Object.entries(notObjects)) {
    add('JSON that is not an object', name, post(body), notObject());
  }
  add('invalid JSON', 'an empty body', post(''), badJson());
  add('invalid JSON', 'a huge number as the body', post('1e400'), badJson(/number out of range/));

  // Bodies that are not UTF-8.
  const bytes = (...parts) =>
    Buffer.concat(
      parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : Buffer.from(p))),
    );
  const inContent = (raw) =>
    bytes('{"model":"zaguanai/socrates","messages":[{"role":"user","content":"', raw, '"}]}');
  const utf8 = {
    'a 0xFF byte in content': inContent([0xff]),
    'an overlong NUL in content': inContent([0xc0, 0x80]),
    'a lone continuation byte': inContent([0x80]),
    'an encoded surrogate': inContent([0xed, 0xa0, 0x80]),
    'a five-byte sequence': inContent([0xf8, 0x88, 0x80, 0x80, 0x80]),
    'a sequence cut at the end of a string': inContent([0xe2, 0x82]),
    'Latin-1 text in content': inContent(Buffer.from('café', 'latin1')),
    'Latin-1 text in model': bytes(
      '{"model":"',
      Buffer.from('sócrates', 'latin1'),
      '","messages":[]}',
    ),
    'Latin-1 text in a role': bytes(
      '{"model":"zaguanai/socrates","messages":[{"role":"',
      Buffer.from('usér', 'latin1'),
      '","content":"x"}]}',
    ),
    'Latin-1 text in a key': bytes('{"', Buffer.from('modél', 'latin1'), '":"x","messages":[]}'),
    'UTF-16 with a byte order mark': Buffer.from(`\ufeff${chat()}`, 'utf16le'),
    'a lone 0xFE before the body': bytes([0xfe], chat()),
  };
  for (const [name, body] of Object.entries(utf8)) add('not UTF-8', name, post(body), notUtf8());
  add(
    'not UTF-8',
    'UTF-16 without a byte order mark',
    post(Buffer.from(chat(), 'utf16le')),
    badJson(),
  );
  add('not UTF-8', 'UTF-32', post(utf32(chat())), badJson());

  // Deep nesting where the gateway reads.
  const DEEP = 100_000;
  add(
    'deep nesting',
    '100k arrays as model',
    post(withRaw('model', nested(DEEP))),
    badParam('model', /model/),
  );
  add(
    'deep nesting',
    '100k objects as model',
    post(withRaw('model', nested(DEEP, '{"a":', '}', '1'))),
    badParam('model', /model/),
  );
  add(
    'deep nesting',
    '100k arrays as messages',
    post(messagesRaw(nested(DEEP))),
    badParam('messages[0]', /messages\[0\]/),
  );
  add(
    'deep nesting',
    '100k objects as messages',
    post(messagesRaw(nested(DEEP, '{"a":', '}', '1'))),
    badParam('messages', /messages/),
  );
  add(
    'deep nesting',
    '100k arrays as a role',
    post(messagesRaw(`[{"role":${nested(DEEP)},"content":"x"}]`)),
    badParam(['messages[0]', 'messages[0].role'], /role/),
  );
  add(
    'deep nesting',
    '100k arrays as stream',
    post(withRaw('stream', nested(DEEP))),
    badParam('stream', /stream/),
  );
  add('deep nesting', '100k arrays as the body', post(nested(DEEP)), notObject());
  add('deep nesting', '100k arrays left open', post(withRaw('x', '['.repeat(DEEP))), badJson());
  add(
    'deep nesting',
    '100k objects left open',
    post(withRaw('x', '{"a":'.repeat(DEEP))),
    badJson(),
  );
  add('deep nesting', '400k arrays as the body', post(nested(400_000)), notObject());

  // Wrong types for every field the gateway reads.
  for (const [name, raw] of valuesExcept('empty string', 'string')) {
    add('wrong type', `model: ${name}`, post(withRaw('model', raw)), badParam('model', /model/));
  }
  for (const [name, raw] of valuesExcept('empty array', 'array')) {
    add(
      'wrong type',
      `messages: ${name}`,
      post(withRaw('messages', raw)),
      badParam('messages', /messages/),
    );
  }
  add(
    'wrong type',
    'messages: an array of other things',
    post(messagesRaw('[1,"a"]')),
    badParam('messages[0]', /messages\[0\]/),
  );
  for (const [name, raw] of valuesExcept('empty object', 'object')) {
    add(
      'wrong type',
      `messages[0]: ${name}`,
      post(messagesRaw(`[${raw}]`)),
      badParam('messages[0]', /messages\[0\]/),
    );
  }
  for (const [name, raw] of valuesExcept('null', 'empty string', 'string')) {
    const body = messagesRaw(`[{"role":${raw},"content":"x"}]`);
    add(
      'wrong type',
      `messages[0].role: ${name}`,
      post(body),
      badParam(['messages[0]', 'messages[0].role'], /role/),
    );
  }
  for (const [name, raw] of [
    ['zero', '0'],
    ['unknown', '"robot"'],
    ['null', 'null'],
    ['missing', undefined],
  ]) {
    const third = raw === undefined ? '{"content":"x"}' : `{"role":${raw},"content":"x"}`;
    const body = messagesRaw(
      `[{"role":"user","content":"a"},{"role":"assistant","content":"b"},${third}]`,
    );
    add(
      'wrong type',
      `messages[2].role: ${name}`,
      post(body),
      badParam(['messages[2]', 'messages[2].role'], /messages\[2\]/),
    );
  }
  for (const [name, raw] of [
    ...valuesExcept('null', 'true', 'false'),
    ['one', '1'],
    ['"true"', '"true"'],
  ]) {
    add(
      'wrong type',
      `stream: ${name}`,
      post(withRaw('stream', raw)),
      badParam('stream', /stream/),
    );
  }
  const streamOptions = {
    true: true,
    zero: 0,
    string: 'yes',
    array: [],
    'include_usage a string': { include_usage: 'yes' },
    'include_usage a number': { include_usage: 1 },
  };
  for (const [name, value] of Object.entries(streamOptions)) {
    const body = chat({ stream: true, stream_options: value });
    add(
      'wrong type',
      `stream_options (streaming): ${name}`,
      post(body),
      refusedOrForwarded('stream_options', JSON.stringify(value)),
    );
  }

  // Missing and empty messages, unknown roles.
  add('missing', 'an empty object', post('{}'), badParam('model', /model/));
  add('missing', 'no model', post(JSON.stringify({ messages: HI })), badParam('model', /model/));
  add(
    'missing',
    'no messages',
    post(JSON.stringify({ model: PERSONA })),
    badParam('messages', /messages/),
  );
  add('missing', 'messages: []', post(messagesRaw('[]')), badParam('messages', /at least one/));
  add(
    'missing',
    'messages: [ ] with white space',
    post(messagesRaw('[ \n ]')),
    badParam('messages', /at least one/),
  );
  add('missing', 'only unknown fields', post('{"foo":1,"bar":[2]}'), badParam('model', /model/));
  const roles = [
    '',
    'User',
    'USER',
    'admin',
    'bot',
    'model',
    'human',
    'assistant ',
    ' user',
    'system\u0000',
    'ユーザー',
    'tool_result',
    'root',
    'function_call',
  ];
  for (const role of roles) {
    const body = messagesRaw(JSON.stringify([{ role, content: 'x' }]));
    add(
      'unknown role',
      `role ${JSON.stringify(role)}`,
      post(body),
      badParam('messages[0].role', /messages\[0\]\.role/),
    );
  }
  add(
    'unknown role',
    'role null',
    post(messagesRaw('[{"role":null,"content":"x"}]')),
    badParam('messages[0].role', /role/),
  );
  add(
    'unknown role',
    'no role',
    post(messagesRaw('[{"content":"x"}]')),
    badParam('messages[0].role', /role/),
  );
  add(
    'unknown role',
    'an empty message',
    post(messagesRaw('[{}]')),
    badParam('messages[0].role', /role/),
  );
  add(
    'unknown role',
    'role twice in one message',
    post(messagesRaw('[{"role":"user","role":"system","content":"x"}]')),
    {
      ...badParam(['messages[0]', 'messages[0].role'], /role/),
      code: ['invalid_parameter', 'duplicate_key'],
    },
  );

  // The model: empty, long, or naming no persona.
  add('model', 'empty', post(chat({ model: '' })), badParam('model', /empty/));
  const models = [
    'a'.repeat(10_240),
    `zaguanai/${'b'.repeat(10_240)}`,
    ' ',
    'zaguanai/',
    'zaguanai/nobody',
    'ZAGUANAI/SOCRATES',
    'zaguanai/Socrates',
    'socrates ',
    ' socrates',
    'zaguanai/socrates\u0000',
    '../socrates',
    'zaguanai/../socrates',
    'persona:socrates',
    'personas:index',
    'zaguanai/personas:index',
    'zaguanai/socrates/extra',
    'openai/gpt-4o',
    'zaguanai/zaguanai/socrates',
    'sócrates',
    'zaguanai/-socrates',
    'zaguanai%2Fsocrates',
    'zaguanai/*',
    '*',
    'zaguanai/socrates\n',
  ];
  for (const model of models) {
    const name =
      model.length > 40
        ? `${model.slice(0, 12)}... (${model.length} bytes)`
        : JSON.stringify(model);
    add('model', name, post(chat({ model })), { ...noModel(), shortMessage: true });
  }
  const ids = [
    'nobody',
    'zaguanai%2Fnobody',
    'persona:socrates',
    'personas:index',
    '%ff%fe',
    'c'.repeat(10_240),
    'zaguanai/socrates/extra',
    'zaguanai%2F..%2Fsocrates',
  ];
  for (const id of ids) {
    const name = id.length > 40 ? `${id.length} bytes` : id;
    add(
      'model',
      `GET /v1/models/${name}`,
      { method: 'GET', path: `/v1/models/${id}` },
      { ...noModel(), shortMessage: true },
    );
  }

  // Huge numbers where the gateway reads.
  add(
    'huge numbers',
    'max_tokens: 1e400',
    post(withRaw('max_tokens', '1e400')),
    refusedOrForwarded('max_tokens', '1e400'),
  );
  add(
    'huge numbers',
    'model: 1e999999',
    post(withRaw('model', '1e999999')),
    badParam('model', /model/),
  );
  add(
    'huge numbers',
    'model: a 40-digit integer',
    post(withRaw('model', '1'.repeat(40))),
    badParam('model', /model/),
  );
  add(
    'huge numbers',
    'stream: -1e400',
    post(withRaw('stream', '-1e400')),
    badParam('stream', /stream/),
  );
  add(
    'huge numbers',
    'stream: 1e-400',
    post(withRaw('stream', '1e-400')),
    badParam('stream', /stream/),
  );
  add(
    'huge numbers',
    'messages: 1e400 inside',
    post(messagesRaw('[1e400]')),
    badParam('messages[0]', /messages\[0\]/),
  );
  add(
    'huge numbers',
    'role: 1e400',
    post(messagesRaw('[{"role":1e400}]')),
    badParam(['messages[0]', 'messages[0].role'], /role/),
  );

  // Duplicate keys.
  const m = `"model":${JSON.stringify(PERSONA)}`;
  const msgs = `"messages":${JSON.stringify(HI)}`;
  const duplicates = {
    'model twice, same value': [`{${m},${m},${msgs}}`, 'model'],
    'model twice, other value': [`{${m},${msgs},"model":"zaguanai/hypatia"}`, 'model'],
    'model three times': [`{${m},${m},${m},${msgs}}`, 'model'],
    'model twice, the first of the wrong type': [`{"model":1,${m},${msgs}}`, 'model'],
    'messages twice': [`{${m},${msgs},${msgs}}`, 'messages'],
    'stream twice': [`{${m},${msgs},"stream":true,"stream":false}`, 'stream'],
    'stream_options twice': [
      `{${m},${msgs},"stream":true,"stream_options":{},"stream_options":{}}`,
      'stream_options',
    ],
    'an unknown field twice': [`{${m},${msgs},"foo":1,"foo":2}`, 'foo'],
    'temperature twice': [`{${m},${msgs},"temperature":0,"temperature":2}`, 'temperature'],
    'x_stub twice': [`{${m},${msgs},"x_stub":{},"x_stub":{}}`, 'x_stub'],
    'model, and model spelt with an escape': [
      `{${m},${msgs},"m\\u006fdel":"zaguanai/hypatia"}`,
      'model',
    ],
    'stream, and stream spelt with an escape': [
      `{${m},${msgs},"stream":false,"str\\u0065am":true}`,
      'stream',
    ],
  };
  for (const [name, [body, param]] of Object.entries(duplicates)) {
    add('duplicate keys', name, post(body), duplicate(param));
  }

  // Content types: the body is read as JSON whatever the type, so the type changes nothing.
  const broken = '{"model":"zaguanai/socrates","messages":';
  const types = [
    'text/plain',
    'application/x-www-form-urlencoded',
    'multipart/form-data; boundary=x',
    'application/xml',
    'application/json; charset=utf-16',
    '*/*',
    'garbage',
    'application/octet-stream',
  ];
  for (const type of types) {
    add(
      'content type',
      `invalid JSON as ${type}`,
      post(broken, { headers: { 'content-type': type } }),
      badJson(),
    );
  }
  add(
    'content type',
    'invalid JSON without a content type',
    post(Buffer.from(broken), { headers: { 'content-type': null } }),
    badJson(),
  );
  add(
    'content type',
    'a form-encoded body',
    post('model=zaguanai%2Fsocrates&messages=hi', {
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    }),
    badJson(),
  );
  add(
    'content type',
    'a multipart body',
    post(
      '--x\r\nContent-Disposition: form-data; name="model"\r\n\r\nzaguanai/socrates\r\n--x--\r\n',
      { headers: { 'content-type': 'multipart/form-data; boundary=x' } },
    ),
    badJson(),
  );

  // Methods and paths.
  for (const method of ['GET', 'PUT', 'DELETE', 'PATCH', 'PROPFIND']) {
    add(
      'methods',
      `${method} /v1/chat/completions`,
      { method, path: '/v1/chat/completions', body: method === 'GET' ? undefined : chat() },
      noMethod('POST'),
    );
  }
  add(
    'methods',
    'HEAD /v1/chat/completions',
    { method: 'HEAD', path: '/v1/chat/completions' },
    { ...noMethod('POST'), noBody: true },
  );
  for (const [method, target] of [
    ['POST', '/v1/models'],
    ['PUT', '/v1/models'],
    ['DELETE', '/v1/models'],
    ['PATCH', '/v1/models'],
    ['POST', '/v1/models/zaguanai%2Fsocrates'],
    ['DELETE', '/v1/models/zaguanai/socrates'],
    ['POST', '/health'],
    ['DELETE', '/health'],
  ]) {
    add(
      'methods',
      `${method} ${target}`,
      { method, path: target, body: method === 'POST' ? '{}' : undefined },
      noMethod('GET, HEAD'),
    );
  }
  const rawMethod = (method) => ({ raw: { method, target: '/v1/chat/completions', body: '' } });
  add('methods', 'TRACE /v1/chat/completions (raw)', rawMethod('TRACE'), noMethod('POST'));
  for (const method of ['patch', 'FOO', 'TRACK']) {
    add('methods', `${method} /v1/chat/completions`, rawMethod(method), runtimeRefusal(501));
  }
  const paths = [
    '/',
    '/v1',
    '/v1/',
    '/v2/chat/completions',
    '/v1/chat/completions/',
    '/v1/chat',
    '/v1/completions',
    '/v1/embeddings',
    '/v1/responses',
    '/V1/CHAT/COMPLETIONS',
    '/v1//chat/completions',
    '/v1/chat/completions%00',
    '/v1/chat%2Fcompletions',
    '/v1/chat/completions;x',
    '/v1/chat/completions.json',
    '/v1/chat/completions%20',
    '/health/',
    '/.env',
    '/admin',
    '/wp-login.php',
    '/v1/models/',
    '/%2e%2e/%2e%2e/etc/passwd',
    `/${'p'.repeat(10_240)}`,
  ];
  for (const target of paths) {
    const name = target.length > 40 ? `a ${target.length}-byte path` : target;
    add('paths', `POST ${name}`, { method: 'POST', path: target, body: chat() }, noPath());
    if (target.length < 40 && paths.indexOf(target) % 3 === 0) {
      add(
        'paths',
        `GET ${name} without a key`,
        { method: 'GET', path: target, auth: null },
        noPath(),
      );
    }
  }

  // Bodies over MAX_BODY_BYTES, with and without content-length.
  const padded = (size, extra = {}) => {
    const body = chat({ ...extra, pad: '' });
    return `${body.slice(0, -2)}${'z'.repeat(size - body.length)}"}`;
  };
  add('oversize', 'one byte over, with content-length', post(padded(MAX_BODY + 1)), tooLarge());
  add('oversize', '2 MiB, with content-length', post(padded(2 * MAX_BODY)), tooLarge());
  add(
    'oversize',
    'one byte over, chunked',
    post(padded(MAX_BODY + 1), { chunked: true }),
    tooLarge(),
  );
  add('oversize', '5 MiB, chunked', post(padded(5 * MAX_BODY), { chunked: true }), tooLarge());
  add('oversize', '2 MiB of invalid JSON', post('{'.repeat(2 * MAX_BODY)), tooLarge());
  add('oversize', '2 MiB that is not UTF-8', post(Buffer.alloc(2 * MAX_BODY, 0xff)), tooLarge());
  add(
    'oversize',
    '2 MiB naming no persona',
    post(padded(2 * MAX_BODY, { model: 'zaguanai/nobody' })),
    tooLarge(),
  );
  add(
    'oversize',
    '2 MiB chunked, no content type',
    post(Buffer.from(padded(2 * MAX_BODY)), { chunked: true, headers: { 'content-type': null } }),
    tooLarge(),
  );

  // Headers with control characters, through a raw socket.
  const key = CLIENT_KEYS[7];
  const rawChat = (headers, body = chat()) => ({
    raw: { method: 'POST', target: '/v1/chat/completions', headers, body },
  });
  add(
    'control characters',
    'authorization ends in \\x01',
    rawChat({ authorization: `Bearer ${key}\x01` }),
    badKey(),
  );
  add(
    'control characters',
    'authorization is \\x7f',
    rawChat({ authorization: 'Bearer \x7f' }),
    badKey(),
  );
  add(
    'control characters',
    'authorization holds an ANSI escape',
    rawChat({ authorization: `Bearer ${key}\x1b[0m` }),
    badKey(),
  );
  add(
    'control characters',
    'authorization holds Latin-1',
    rawChat({ authorization: `Bearer ${key}\xe9` }),
    badKey(),
  );
  add(
    'control characters',
    'authorization separated by a tab',
    rawChat({ authorization: `Bearer\t${key}` }),
    badKey(),
  );
  add(
    'control characters',
    'two authorization headers',
    rawChat({ authorization: [`Bearer ${key}`, `Bearer ${CLIENT_KEYS[8]}`] }),
    badKey(),
  );
  add(
    'control characters',
    'x-request-id with \\x01, invalid JSON',
    rawChat({ authorization: `Bearer ${key}`, 'x-request-id': 'id\x01{{ID}}' }, '{'),
    { ...badJson(), idReplaced: true },
  );
  add(
    'control characters',
    'x-request-id with an ANSI escape, unknown model',
    rawChat(
      { authorization: `Bearer ${key}`, 'x-request-id': '\x1b[31m{{ID}}' },
      chat({ model: 'zaguanai/nobody' }),
    ),
    { ...noModel(), idReplaced: true },
  );
  add(
    'control characters',
    'x-request-id with \\x7f, no key',
    rawChat({ 'x-request-id': '{{ID}}\x7f' }),
    { ...badKey(), idReplaced: true },
  );
  add(
    'control characters',
    'content-type with \\x01, invalid JSON',
    rawChat({ authorization: `Bearer ${key}`, 'content-type': 'application/json\x01' }, '{'),
    badJson(),
  );
  // workerd ends a header line at a bare CR or LF too, so the rest becomes a request header of
  // its own; what matters is that nothing reaches the response's headers.
  for (const [label, separator] of [
    ['a bare CR', '\r'],
    ['a bare LF', '\n'],
    ['CR LF', '\r\n'],
  ]) {
    const headers = {
      authorization: `Bearer ${key}`,
      'x-request-id': `{{ID}}${separator}X-Injected: yes`,
    };
    add(
      'control characters',
      `x-request-id with ${label}, invalid JSON`,
      rawChat(headers, '{'),
      badJson(),
    );
  }
  add(
    'control characters',
    'authorization with a NUL',
    rawChat({ authorization: `Bearer ${key}\x00` }),
    runtimeRefusal(),
  );

  // Missing, wrong and malformed Authorization.
  const b64 = Buffer.from(`user:${key}`).toString('base64');
  const digest = crypto.createHash('sha256').update(key).digest('hex');
  const auths = {
    missing: null,
    empty: '',
    'Bearer alone': 'Bearer',
    'Bearer and a space': 'Bearer ',
    'Bearer and spaces': 'Bearer    ',
    'Basic credentials': `Basic ${b64}`,
    'an unknown key': 'Bearer sk-not-a-key-of-this-gateway',
    'a key with a character more': `Bearer ${key}x`,
    'a key with a character in front': `Bearer x${key}`,
    'a key without its last character': `Bearer ${key.slice(0, -1)}`,
    'a key in upper case': `Bearer ${key.toUpperCase()}`,
    'two keys with a comma': `Bearer ${key},${CLIENT_KEYS[8]}`,
    'a key and more words': `Bearer ${key} extra`,
    'a quoted key': `Bearer "${key}"`,
    'scheme Token': `Token ${key}`,
    'no scheme': key,
    'a 10 KB key': `Bearer ${'k'.repeat(10_240)}`,
    'the prefix every key shares': 'Bearer sk-e2e-client-',
    'Bearer null': 'Bearer null',
    'Bearer undefined': 'Bearer undefined',
    'a wildcard': 'Bearer *',
    'the upstream key': `Bearer ${UPSTREAM_KEY}`,
    'the SHA-256 hex of a key': `Bearer ${digest}`,
  };
  for (const [name, authorization] of Object.entries(auths)) {
    add('authorization', name, post(chat(), { auth: authorization }), badKey());
  }
  add(
    'authorization',
    'x-api-key instead of authorization',
    post(chat(), { auth: null, headers: { 'x-api-key': key } }),
    badKey(),
  );
  add(
    'authorization',
    'GET /v1/models with no key',
    { method: 'GET', path: '/v1/models', auth: null },
    badKey(),
  );
  add(
    'authorization',
    'GET /v1/models with a wrong key',
    { method: 'GET', path: '/v1/models', auth: 'Bearer wrong' },
    badKey(),
  );
  add(
    'authorization',
    'an unknown key and invalid JSON',
    post('{', { auth: 'Bearer wrong' }),
    badKey(),
  );

  return cases;
}

/**
 * What the gateway passes on as valid by design, with how the upstream must have received it:
 * fields it does not read are forwarded byte for byte, however odd.
 */
export function forwardedCases() {
  const cases = [];
  const add = (name, body, expect, headers = {}) =>
    cases.push({
      group: 'forwarded',
      name,
      request: { method: 'POST', path: '/v1/chat/completions', body, headers },
      expect,
    });
  // Deep, but not so deep that the stub's own JSON.parse runs out of stack.
  const deep = nested(3000);
  add(
    '3,000 nested arrays in an unknown field',
    withRaw('deep', deep),
    forwarded(`"deep":${deep}`),
  );
  add(
    '3,000 nested arrays as content',
    messagesRaw(`[{"role":"user","content":${deep}}]`),
    forwarded(`"content":${deep}`),
  );
  add(
    'a valid body sent as text/plain',
    chat({ seen: 'text/plain' }),
    forwarded('"seen":"text/plain"'),
    { 'content-type': 'text/plain' },
  );
  add(
    'content twice in one message',
    messagesRaw('[{"role":"user","content":"a","content":"b"}]'),
    forwarded('"content":"a","content":"b"'),
  );
  const exact = chat({ pad: '' });
  const body = `${exact.slice(0, -2)}${'y'.repeat(MAX_BODY - exact.length)}"}`;
  add('a body of exactly MAX_BODY_BYTES', body, forwarded(`"pad":"${'y'.repeat(64)}`));
  return cases;
}

function utf32(text) {
  const out = Buffer.alloc(text.length * 4);
  for (let i = 0; i < text.length; i += 1) out.writeUInt32LE(text.charCodeAt(i), i * 4);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Sending.

/**
 * A raw request `{ method, target, headers, body }` as HTTP/1.1 bytes. Header values are written
 * as Latin-1, control characters and all; `{{ID}}` in a value becomes `id`, and without one the
 * request gets `X-Request-ID: id`.
 */
export function rawBytes({ method, target, headers = {}, body = '' }, id) {
  const payload = Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8');
  const lines = [`${method} ${target} HTTP/1.1`, 'Host: 127.0.0.1', 'Connection: close'];
  const names = Object.keys(headers).map((name) => name.toLowerCase());
  for (const [name, value] of Object.entries(headers)) {
    for (const one of [value].flat()) lines.push(`${name}: ${one.replaceAll('{{ID}}', id)}`);
  }
  if (!names.includes('x-request-id')) lines.push(`X-Request-ID: ${id}`);
  if (!names.includes('content-type') && payload.length > 0) {
    lines.push('Content-Type: application/json');
  }
  lines.push(`Content-Length: ${payload.length}`);
  return Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), payload]);
}

/**
 * Sends raw bytes and reads one answer: until its body is complete (by content-length or the
 * last chunk) or the server closes. workerd keeps the connection open despite
 * `Connection: close`. Resolves to { status, headers, text, hung } (hung: no whole answer within
 * `timeoutMs`). With `keepOpenMs`, the socket is destroyed that long after the bytes went out.
 */
export function sendRaw(gw, bytes, { timeoutMs = 20_000, keepOpenMs = 0 } = {}) {
  const { hostname, port } = new URL(gw.origin);
  return new Promise((resolve) => {
    const chunks = [];
    let done = false;
    const socket = net.connect(Number(port), hostname, () => {
      socket.write(bytes);
      if (keepOpenMs > 0) setTimeout(() => socket.destroy(), keepOpenMs);
    });
    const finish = (hung) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ ...parseResponse(Buffer.concat(chunks)), hung });
    };
    const timer = setTimeout(() => finish(true), timeoutMs);
    socket.on('data', (chunk) => {
      chunks.push(chunk);
      if (isComplete(Buffer.concat(chunks))) finish(false);
    });
    socket.on('close', () => finish(false));
    socket.on('error', () => {});
  });
}

/** Whether a buffer holds a whole response (a request that is not HEAD). */
function isComplete(buffer) {
  const end = buffer.indexOf('\r\n\r\n');
  if (end === -1) return false;
  const head = buffer.subarray(0, end).toString('latin1');
  const body = buffer.subarray(end + 4);
  if (/^HTTP\/1\.1 (204|304)/.test(head)) return true;
  const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  if (length) return body.length >= Number(length[1]);
  if (/\r\ntransfer-encoding:\s*chunked/i.test(head))
    return body.includes('\r\n0\r\n\r\n') || body.subarray(0, 5).toString() === '0\r\n\r\n';
  return false;
}

function parseResponse(buffer) {
  const end = buffer.indexOf('\r\n\r\n');
  if (end === -1) return { status: 0, headers: {}, text: buffer.toString('latin1') };
  const [statusLine, ...lines] = buffer.subarray(0, end).toString('latin1').split('\r\n');
  const headers = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
  }
  let body = buffer.subarray(end + 4);
  if (/chunked/i.test(headers['transfer-encoding'] ?? '')) body = unchunk(body);
  return { status: Number(statusLine.split(' ')[1]), headers, text: body.toString('utf8') };
}

function unchunk(body) {
  const parts = [];
  let at = 0;
  while (at < body.length) {
    const lineEnd = body.indexOf('\r\n', at);
    if (lineEnd === -1) break;
    const size = parseInt(body.subarray(at, lineEnd).toString('latin1'), 16);
    if (!(size > 0)) break;
    parts.push(body.subarray(lineEnd + 2, lineEnd + 2 + size));
    at = lineEnd + 2 + size + 2;
  }
  return Buffer.concat(parts);
}

/**
 * Sends a case's request through fetch. `headers` values of null are left out; `auth` undefined
 * means a valid client key, null none. Resolves to { status, headers, text, bytes, hung }.
 */
export async function sendFetch(gw, request, { id, key, timeoutMs = 20_000 } = {}) {
  const headers = {};
  if (request.body !== undefined) headers['content-type'] = 'application/json';
  if (request.auth === undefined) headers.authorization = `Bearer ${key}`;
  else if (request.auth !== null) headers.authorization = request.auth;
  if (id) headers['x-request-id'] = id;
  for (const [name, value] of Object.entries(request.headers ?? {})) {
    if (value === null) delete headers[name];
    else headers[name] = value;
  }
  const init = { method: request.method, headers, signal: AbortSignal.timeout(timeoutMs) };
  if (request.body !== undefined) {
    init.body = request.chunked ? slowly(Buffer.from(request.body)) : request.body;
    if (request.chunked) init.duplex = 'half';
  }
  try {
    const response = await fetch(`${gw.origin}${request.path}`, init);
    const bytes = Buffer.from(await response.arrayBuffer());
    return {
      status: response.status,
      headers: Object.fromEntries(response.headers),
      text: bytes.toString('utf8'),
      bytes,
      hung: false,
    };
  } catch (error) {
    if (error.name === 'TimeoutError') return { status: 0, headers: {}, text: '', hung: true };
    throw error;
  }
}

/** A body as a stream of 64 KiB pieces, so fetch sends it chunked, without content-length. */
function slowly(bytes) {
  let at = 0;
  return new ReadableStream({
    pull(controller) {
      if (at >= bytes.length) {
        controller.close();
        return;
      }
      controller.enqueue(bytes.subarray(at, at + 65_536));
      at += 65_536;
    },
  });
}

// ---------------------------------------------------------------------------------------------
// An instance whose Worker log is kept whole.

let instances = 0;
let built = false;

/**
 * startGateway with wrangler at log level `log` (at `warn`, console.log lines never reach the
 * output) and every line it prints appended to a file of its own. `log()` is the text printed
 * since the instance was ready (wrangler's start-up banner, which lists the vars, left out);
 * `lines()` the Worker's JSON log lines in it; `lineFor(id)` waits for the one of a request.
 */
export async function startLoggedGateway(vars = {}) {
  instances += 1;
  const file = path.join(os.tmpdir(), `persona-gateway-log-${process.pid}-${instances}.log`);
  fs.writeFileSync(file, '');
  const saved = [process.env.E2E_WRANGLER_LOG, process.env.E2E_WRANGLER_LOG_LEVEL];
  process.env.E2E_WRANGLER_LOG = file;
  process.env.E2E_WRANGLER_LOG_LEVEL = 'log';
  let gw;
  try {
    gw = await startGateway({ build: !built && !process.env.E2E_WRANGLER_CONFIG, vars });
    built = true;
  } finally {
    restoreEnv('E2E_WRANGLER_LOG', saved[0]);
    restoreEnv('E2E_WRANGLER_LOG_LEVEL', saved[1]);
  }
  const start = fs.statSync(file).size;
  const log = () => fs.readFileSync(file).subarray(start).toString('utf8');
  const stop = gw.stop;
  return Object.assign(gw, {
    logFile: file,
    log,
    lines: () => parseLogLines(log()),
    lineFor: (id, ms) =>
      waitForLines(() => parseLogLines(log()), id, ms).then((found) => found[0] ?? null),
    linesFor: (id, ms) => waitForLines(() => parseLogLines(log()), id, ms),
    stop: async () => {
      await stop();
      fs.rmSync(file, { force: true });
    },
  });
}

function restoreEnv(name, value) {
  if (value === undefined) delete process.env[name];
  else process.env[name] = value;
}

/**
 * The Worker's JSON log lines in wrangler's output, each with `level`: `log`, `warn` or `error`
 * (wrangler marks console.warn and console.error lines, in colour).
 */
export function parseLogLines(text) {
  const lines = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\x1b\[[0-9;]*m/g, '');
    const start = line.indexOf('{"');
    const end = line.lastIndexOf('}');
    if (start === -1 || end < start) continue;
    let value;
    try {
      value = JSON.parse(line.slice(start, end + 1));
    } catch {
      continue;
    }
    if (!value || typeof value !== 'object' || !('request_id' in value)) continue;
    const prefix = line.slice(0, start);
    const level = /\[ERROR\]/.test(prefix) ? 'error' : /\[WARNING\]/.test(prefix) ? 'warn' : 'log';
    lines.push({ line: value, level, text: line });
  }
  return lines;
}

async function waitForLines(read, id, ms = 10_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const found = read().filter((entry) => entry.line.request_id === id);
    if (found.length > 0 || Date.now() > deadline) return found;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
