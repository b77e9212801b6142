//! Fuzzes the streaming rewriter: any cutting into reads gives the bytes of one read, nothing
//! panics, no U+FFFD appears that the input lacked, and LF-framed data events change only where
//! a JSON string literal became the persona id (and, for JSON objects, only in `model`).
//!
//! Input: a four-byte header (largest read, event bound, two seed bytes), then the stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use persona_gateway::sse::{error_event, Ending, Rewriter, DEFAULT_MAX_EVENT_BYTES};
use serde_json::Value;

/// A persona id whose JSON literal, `"\u0001fz"`, input hardly ever holds: in the output each
/// occurrence marks a rewrite.
const PERSONA: &str = "\u{1}fz";
const LITERAL: &[u8] = b"\"\\u0001fz\"";
const REPLACEMENT_CHARACTER: &[u8] = b"\xEF\xBF\xBD";

fuzz_target!(|input: &[u8]| check(input));

fn check(input: &[u8]) {
    let Some((header, stream)) = input.split_first_chunk::<4>() else {
        return;
    };
    let [max_read, bound, seed_high, seed_low] = *header;
    let whole = run(&[stream], DEFAULT_MAX_EVENT_BYTES);

    let seed = u16::from_be_bytes([seed_high, seed_low]);
    let reads = cut(stream, usize::from(max_read) + 1, seed);
    check_same(&run(&reads, DEFAULT_MAX_EVENT_BYTES), &whole, &reads);
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    check_same(&run(&bytes, DEFAULT_MAX_EVENT_BYTES), &whole, &bytes);

    if bound > 0 {
        let max = usize::from(bound) * 8;
        let bounded = run(&[stream], max);
        check_bounded(stream, &whole, &bounded, max);
        check_same(&run(&reads, max), &bounded, &reads);
    }
    assert!(count(&whole.0, REPLACEMENT_CHARACTER) <= count(stream, REPLACEMENT_CHARACTER));
    check_only_literals_changed(stream, &whole.0);
}

/// Asserts that cut reads gave the output of one read.
fn check_same(actual: &(Vec<u8>, Ending), expected: &(Vec<u8>, Ending), reads: &[&[u8]]) {
    let same = actual.1 == expected.1 && equal(&actual.0, &expected.0, false);
    assert!(same, "reads {reads:?}: {actual:?} != {expected:?}");
}

/// Whether `actual` is `expected`, or with `prefix` its start.
fn equal(actual: &[u8], expected: &[u8], prefix: bool) -> bool {
    if prefix {
        expected.starts_with(actual)
    } else {
        actual == expected
    }
}

fn run(reads: &[&[u8]], max_event_bytes: usize) -> (Vec<u8>, Ending) {
    let mut rewriter = Rewriter::with_max_event_bytes(PERSONA, max_event_bytes);
    let mut out = Vec::new();
    for read in reads {
        if !rewriter.push(read, &mut out) {
            break;
        }
    }
    let ending = rewriter.finish(&mut out);
    (out, ending)
}

/// Cuts `stream` into reads of 0 to `max_read` bytes, lengths from a small LCG.
fn cut(stream: &[u8], max_read: usize, seed: u16) -> Vec<&[u8]> {
    let mut state = u32::from(seed);
    let mut reads = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let len = (state >> 16) as usize % (max_read + 1);
        let (read, tail) = rest.split_at(len.min(rest.len()));
        reads.push(read);
        rest = tail;
    }
    reads
}

/// Under a bound the stream comes out as without one, or as a prefix of that and the oversize
/// error; which of the two does not depend on the reads (the callers compare both).
fn check_bounded(stream: &[u8], free: &(Vec<u8>, Ending), bounded: &(Vec<u8>, Ending), max: usize) {
    if bounded.1 != Ending::Oversized {
        check_same(bounded, free, &[stream]);
        return;
    }
    assert!(stream.len() > max, "oversized with {} bytes for a bound of {max}", stream.len());
    let message = format!("upstream event exceeds the limit of {max} bytes");
    let error = error_event(&message, "upstream_event_too_large");
    let before = bounded.0.strip_suffix(error.as_slice());
    assert!(
        before.is_some_and(|before| equal(before, &free.0, true)),
        "{:?}",
        bounded.0
    );
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack.windows(needle.len()).filter(|window| window == &needle).count()
}

/// Where the framing is plain (LF lines, only data and comment fields, a blank line at the end,
/// no byte order mark), output blocks pair with input blocks. Each output block must be its
/// input with some JSON string literals replaced by the persona's, and a JSON object must mean
/// the same but for a string `model`. A stream without any data event gets the rewriter's
/// in-band error after its blocks; that error is set aside first.
fn check_only_literals_changed(stream: &[u8], out: &[u8]) {
    let nothing = error_event("upstream stream ended without any event", "upstream_truncated");
    let out = out.strip_suffix(nothing.as_slice()).unwrap_or(out);
    let plain =
        !stream.contains(&b'\r') && stream.ends_with(b"\n\n") && count(stream, LITERAL) == 0;
    let (Some(inputs), Some(outputs)) = (blocks(stream).filter(|_| plain), blocks(out)) else {
        return;
    };
    assert_eq!(inputs.len(), outputs.len(), "block count");
    for (before, after) in inputs.iter().zip(&outputs) {
        assert!(literals_replaced(before, after), "{before:?} became {after:?}");
        let Ok(Value::Object(mut expected)) = serde_json::from_slice(&data(before)) else {
            continue;
        };
        if expected.get("model").is_some_and(Value::is_string) {
            expected.insert("model".to_owned(), Value::from(PERSONA));
        }
        let actual = serde_json::from_slice::<Value>(&data(after)).ok();
        assert_eq!(actual, Some(Value::Object(expected)), "{after:?}");
    }
}

/// The blocks of a stream, each with its blank line; `None` when a line is neither a comment
/// nor a data field, or the stream does not end with a blank line.
fn blocks(stream: &[u8]) -> Option<Vec<&[u8]>> {
    let mut blocks = Vec::new();
    let mut start = 0;
    let mut pos = 0;
    while let Some(len) = stream[pos..].iter().position(|&byte| byte == b'\n') {
        let line = &stream[pos..pos + len];
        pos += len + 1;
        if line.is_empty() {
            blocks.push(&stream[start..pos]);
            start = pos;
        } else if !line.starts_with(b":") && data_value(line).is_none() {
            return None;
        }
    }
    (start == stream.len()).then_some(blocks)
}

/// `data` field values joined by LF, as an event-stream parser hands them on.
fn data(block: &[u8]) -> Vec<u8> {
    let values: Vec<&[u8]> = block.split(|&byte| byte == b'\n').filter_map(data_value).collect();
    values.join(&b'\n')
}

fn data_value(line: &[u8]) -> Option<&[u8]> {
    if line == b"data" {
        return Some(b"");
    }
    let value = line.strip_prefix(b"data:")?;
    Some(value.strip_prefix(b" ").unwrap_or(value))
}

/// Whether `after` is `before` with zero or more JSON string literals replaced by [`LITERAL`].
fn literals_replaced(before: &[u8], after: &[u8]) -> bool {
    let mut segments = split_at_literals(after).into_iter();
    let Some(mut rest) = segments.next().and_then(|first| before.strip_prefix(first)) else {
        return false;
    };
    for segment in segments {
        let Some(len) = string_literal_len(rest) else {
            return false;
        };
        let Some(tail) = rest[len..].strip_prefix(segment) else {
            return false;
        };
        rest = tail;
    }
    rest.is_empty()
}

/// The pieces of `text` between occurrences of [`LITERAL`].
fn split_at_literals(text: &[u8]) -> Vec<&[u8]> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut pos = 0;
    while pos + LITERAL.len() <= text.len() {
        if text[pos..].starts_with(LITERAL) {
            pieces.push(&text[start..pos]);
            pos += LITERAL.len();
            start = pos;
        } else {
            pos += 1;
        }
    }
    pieces.push(&text[start..]);
    pieces
}

/// The length of the JSON string literal `text` starts with, quotes included.
fn string_literal_len(text: &[u8]) -> Option<usize> {
    if text.first() != Some(&b'"') {
        return None;
    }
    let mut pos = 1;
    while let Some(&byte) = text.get(pos) {
        match byte {
            b'"' => return Some(pos + 1),
            b'\\' => pos += 2,
            _ => pos += 1,
        }
    }
    None
}
