// Reading event streams the way the WHATWG spec and the OpenAI SDKs do, written apart from the
// Worker's own code so that the tests judge its output independently.

import assert from 'node:assert/strict';

/** Lines with their terminators: CRLF, LF or a lone CR; the last line may have none. */
export function splitLines(text) {
  const lines = [];
  let start = 0;
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i];
    if (c === '\n' || c === '\r') {
      const end = c === '\r' && text[i + 1] === '\n' ? i + 2 : i + 1;
      lines.push({ content: text.slice(start, i), end: text.slice(i, end) });
      start = end;
      i = end - 1;
    }
  }
  if (start < text.length) lines.push({ content: text.slice(start), end: '' });
  return lines;
}

/**
 * Cuts a stream into raw blocks, each ending with its blank line; the parts join back to the
 * input. A last block without a blank line (an unterminated event) comes out as it is.
 */
export function splitBlocks(text) {
  const blocks = [];
  let current = '';
  for (const line of splitLines(text)) {
    current += line.content + line.end;
    if (line.content === '' && line.end !== '') {
      blocks.push(current);
      current = '';
    }
  }
  if (current !== '') blocks.push(current);
  return blocks;
}

/** Whether a raw block ends with a blank line, so a client dispatches it. */
export function isTerminated(block) {
  const lines = splitLines(block);
  const last = lines[lines.length - 1];
  return last !== undefined && last.content === '' && last.end !== '';
}

/** The fields of one block: [{name, value}] with comments left out, plus its joined data. */
export function parseBlock(block) {
  const fields = [];
  for (const { content } of splitLines(block)) {
    if (content === '' || content.startsWith(':')) continue;
    const colon = content.indexOf(':');
    const name = colon === -1 ? content : content.slice(0, colon);
    let value = colon === -1 ? '' : content.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    fields.push({ name, value });
  }
  const dataLines = fields.filter((f) => f.name === 'data').map((f) => f.value);
  return { fields, data: dataLines.length ? dataLines.join('\n') : null };
}

/** Decodes a whole stream into the events a spec-compliant client dispatches. */
export function decodeEvents(text) {
  const events = [];
  for (const block of splitBlocks(text)) {
    if (!isTerminated(block)) continue;
    const { fields, data } = parseBlock(block);
    if (data === null) continue;
    const event = { event: 'message', data, id: null };
    for (const field of fields) {
      if (field.name === 'event') event.event = field.value;
      if (field.name === 'id') event.id = field.value;
    }
    events.push(event);
  }
  return events;
}

/** The JSON chunks of a stream (every event but [DONE]), parsed as the SDKs do. */
export function decodeChunks(text) {
  return decodeEvents(text)
    .filter((event) => !event.data.startsWith('[DONE]'))
    .map((event) => JSON.parse(event.data));
}

function topLevelModel(data) {
  if (data === null) return undefined;
  let value;
  try {
    value = JSON.parse(data);
  } catch {
    return undefined;
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined;
  return typeof value.model === 'string' ? { object: value, model: value.model } : undefined;
}

/** A block a gateway drops: no data, but event/id/retry fields that would crash the SDKs. */
export function isDroppedBlock(block) {
  const { fields, data } = parseBlock(block);
  return data === null && fields.some((f) => ['event', 'id', 'retry'].includes(f.name));
}

function show(text) {
  return JSON.stringify(text.length > 400 ? `${text.slice(0, 200)} … ${text.slice(-200)}` : text);
}

/**
 * Checks that `got` is exactly one JSON string literal of `want` replaced by the persona id's
 * literal, that the replaced literal was the top-level model, and nothing else changed.
 */
function assertModelRewritten(want, got, personaId, parsed, where) {
  const literal = JSON.stringify(personaId);
  for (let at = got.indexOf(literal); at !== -1; at = got.indexOf(literal, at + 1)) {
    const before = got.slice(0, at);
    const after = got.slice(at + literal.length);
    if (!want.startsWith(before) || !want.endsWith(after)) continue;
    if (want.length < before.length + after.length) continue;
    const replaced = want.slice(before.length, want.length - after.length);
    let value;
    try {
      value = JSON.parse(replaced);
    } catch {
      continue;
    }
    if (value !== parsed.model) continue;
    const gotData = parseBlock(got).data;
    assert.deepStrictEqual(
      JSON.parse(gotData),
      { ...parsed.object, model: personaId },
      `${where}: payload`,
    );
    return;
  }
  assert.fail(
    `${where}: expected only the top-level model replaced by ${literal}\n` +
      `  upstream: ${show(want)}\n  gateway:  ${show(got)}`,
  );
}

/**
 * Compares what the gateway sent (`output`) with what the upstream sent (`input`), event by
 * event: only the top-level model string of JSON data events may differ; data-less
 * event/id/retry blocks are dropped; an unterminated last event gets its blank line.
 */
export function assertFaithful(input, output, personaId) {
  const expected = splitBlocks(input).filter((block) => !isDroppedBlock(block));
  const got = splitBlocks(output);
  assert.ok(
    got.length === expected.length,
    `expected ${expected.length} events, got ${got.length}\n  upstream: ${show(input)}\n  gateway:  ${show(output)}`,
  );
  for (let i = 0; i < expected.length; i += 1) {
    let want = expected[i];
    let have = got[i];
    const where = `event ${i + 1} of ${expected.length}`;
    if (i === expected.length - 1 && !isTerminated(want)) {
      assert.ok(
        isTerminated(have),
        `${where}: the unterminated last event must get its blank line: ${show(have)}`,
      );
      // Compare without the line ends: the gateway may only have appended some.
      want = want.replace(/[\r\n]+$/, '');
      have = have.replace(/[\r\n]+$/, '');
    }
    const parsed = topLevelModel(parseBlock(want).data);
    if (parsed === undefined || parsed.model === personaId) {
      assert.ok(
        have === want,
        `${where} must pass unchanged\n  upstream: ${show(want)}\n  gateway:  ${show(have)}`,
      );
    } else {
      assertModelRewritten(want, have, personaId, parsed, where);
    }
  }
}
