//! The streaming rewriter: reads an upstream event stream (WHATWG `text/event-stream`) chunk by
//! chunk and writes it back out unchanged but for the top-level `model` of each data event.
//!
//! Bytes are framed, never decoded, so a read may end anywhere: inside a UTF-8 sequence, a CRLF
//! or the value being rewritten. Each byte is scanned once for line ends; a block is held only
//! until the blank line that dispatches it, and never beyond `max_event_bytes`.

use std::ops::Range;

use crate::json::{Scanner, Shape};
use crate::usage::{self, Usage};

/// The default bound on one buffered event: far above any real chunk, far below the isolate's
/// memory.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 8 * 1024 * 1024;

const BYTE_ORDER_MARK: &[u8] = b"\xEF\xBB\xBF";

/// What the end of the upstream stream meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Every event arrived whole.
    Complete,
    /// The stream stopped inside an event; an in-band error event was written in its place.
    Truncated,
    /// One event outgrew the bound; an in-band error event was written and the rest ignored.
    Oversized,
}

/// Rewrites one stream. Feed it with [`Rewriter::push`], end it with [`Rewriter::finish`].
#[derive(Debug)]
pub struct Rewriter {
    /// The persona id as a JSON string literal, quotes included.
    replacement: Vec<u8>,
    max_event_bytes: usize,
    /// The block not yet dispatched: every byte from its first line on.
    pending: Vec<u8>,
    block: Block,
    scanner: Scanner,
    joined: Vec<u8>,
    phase: Phase,
    /// Bytes looked at so far, by the line scan and the JSON scan together: the measure that
    /// shows the cost is linear in the input.
    examined: u64,
    /// The last usage the stream reported.
    usage: Option<Usage>,
    /// Whether usage-only chunks are held back (the client did not ask for them).
    drop_usage_chunks: bool,
    /// Whether the last dispatched block was dropped (fields without data).
    dropped_last: bool,
    /// Whether any data event went out: a stream without one is no answer at all.
    answered: bool,
    /// A secret that error events must not carry (the upstream key).
    secret: String,
}

/// Where the stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not yet known whether it starts with a byte order mark.
    Start,
    Open,
    /// An event outgrew the bound; nothing more is read.
    Failed,
}

/// What is known of the block being read. Positions are relative to the block's first byte.
#[derive(Debug, Default)]
struct Block {
    /// Where the next line starts (everything before it is split into lines).
    line_start: usize,
    /// How far line ends have been searched.
    scanned: usize,
    /// The value of each `data` field, in order.
    data: Vec<Range<usize>>,
    /// Whether a field other than `data` (event, id, retry, unknown) was seen.
    other_fields: bool,
    /// The last line ended with a CR that was the last byte read: a LF next belongs to it.
    after_cr: bool,
}

impl Rewriter {
    /// A rewriter that puts `persona_id` into every top-level `model` string.
    #[must_use]
    pub fn new(persona_id: &str) -> Self {
        Self::with_max_event_bytes(persona_id, DEFAULT_MAX_EVENT_BYTES)
    }

    /// As [`Rewriter::new`], with a bound on the bytes one event may take.
    #[must_use]
    pub fn with_max_event_bytes(persona_id: &str, max_event_bytes: usize) -> Self {
        Self {
            replacement: json_string(persona_id),
            max_event_bytes,
            pending: Vec::new(),
            block: Block::default(),
            scanner: Scanner::default(),
            joined: Vec::new(),
            phase: Phase::Start,
            examined: 0,
            usage: None,
            drop_usage_chunks: false,
            dropped_last: false,
            answered: false,
            secret: String::new(),
        }
    }

    /// Holds back usage-only chunks (`"choices": []` or no `choices`, with a `usage`): for when
    /// the gateway asked the upstream for usage that the client did not ask for. Their usage is
    /// still read.
    #[must_use]
    pub fn dropping_usage_chunks(mut self) -> Self {
        self.drop_usage_chunks = true;
        self
    }

    /// Whether the stream may go on: false once an event outgrew the bound.
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.phase != Phase::Failed
    }

    /// Redacts `secret` from error events (`{"error": ...}`), should the upstream quote it.
    #[must_use]
    pub fn redacting(mut self, secret: &str) -> Self {
        secret.clone_into(&mut self.secret);
        self
    }

    /// The last token usage the stream reported, if any.
    #[must_use]
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Takes one upstream read and appends to `out` every event it completes. Returns false once
    /// the stream has failed (an event outgrew the bound); the caller should stop reading.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> bool {
        match self.phase {
            Phase::Failed => return false,
            Phase::Open => return self.push_framed(chunk, out),
            Phase::Start => {}
        }
        self.pending.extend_from_slice(chunk);
        if !self.check_start(out) {
            return true;
        }
        let held = std::mem::take(&mut self.pending);
        self.push_framed(&held, out)
    }

    fn push_framed(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> bool {
        if self.pending.is_empty() {
            // The common case: no block is waiting, so complete events go out straight from
            // the read and only its unfinished tail is copied.
            let consumed = self.dispatch_complete(chunk, out);
            self.pending.extend_from_slice(&chunk[consumed..]);
        } else {
            self.pending.extend_from_slice(chunk);
            let pending = std::mem::take(&mut self.pending);
            let consumed = self.dispatch_complete(&pending, out);
            self.pending = pending;
            self.pending.drain(..consumed);
        }
        if self.phase == Phase::Failed {
            return false;
        }
        // A block still open is already larger than the bound allows a whole block to be.
        if self.pending.len() > self.max_event_bytes {
            self.fail(out);
            return false;
        }
        true
    }

    /// How many bytes the rewriter has looked at: each input byte about once for framing and
    /// once more if it is event data. Grows linearly with the input, whatever the reads.
    #[must_use]
    pub fn bytes_examined(&self) -> u64 {
        self.examined
    }

    /// Ends the stream: a last block without its blank line is dispatched when it is whole,
    /// and replaced by an in-band error event when the stream stopped inside it. A stream that
    /// never carried a data event also ends with that error: it answered nothing.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Ending {
        if self.phase == Phase::Failed {
            return Ending::Oversized;
        }
        let ending = if self.phase == Phase::Start {
            self.phase = Phase::Open;
            out.append(&mut self.pending);
            Ending::Complete
        } else {
            let rest = std::mem::take(&mut self.pending);
            self.finish_block(&rest, out)
        };
        self.block = Block::default();
        if ending == Ending::Complete && !self.answered {
            let message = "upstream stream ended without any event";
            out.extend_from_slice(&error_event(message, "upstream_truncated"));
            return Ending::Truncated;
        }
        ending
    }

    /// The block the stream ended in, never dispatched: without its blank line it is whole
    /// when its data is JSON or `[DONE]` (then the missing line ends are added, in the stream's
    /// own style, so clients dispatch it), and cut off otherwise.
    fn finish_block(&mut self, rest: &[u8], out: &mut Vec<u8>) -> Ending {
        if rest.is_empty() {
            return Ending::Complete;
        }
        if rest.len() > self.max_event_bytes {
            self.fail(out);
            return Ending::Oversized;
        }
        let unterminated = self.block.line_start < rest.len();
        if unterminated {
            self.read_line(rest, self.block.line_start..rest.len());
        }
        if self.block.data.is_empty() {
            if !self.block.other_fields {
                out.extend_from_slice(rest);
            }
            return Ending::Complete;
        }
        let data = data_of(&self.block.data, rest, &mut self.joined);
        if !data.starts_with(b"[DONE]") && self.scanner.scan(data) == Shape::Invalid {
            let message = "upstream stream ended in the middle of an event";
            out.extend_from_slice(&error_event(message, "upstream_truncated"));
            return Ending::Truncated;
        }
        self.emit(rest, out);
        out.extend_from_slice(match rest.last() {
            _ if unterminated => b"\n\n",
            Some(b'\r') => b"\r",
            _ => b"\n",
        });
        Ending::Complete
    }

    /// Decides, once enough bytes are held, whether the stream starts with a byte order mark,
    /// which goes out as it came but is not part of the first line. False while undecided.
    fn check_start(&mut self, out: &mut Vec<u8>) -> bool {
        let prefix_len = self.pending.len().min(BYTE_ORDER_MARK.len());
        if self.pending[..prefix_len] != BYTE_ORDER_MARK[..prefix_len] {
            self.phase = Phase::Open;
        } else if self.pending.len() >= BYTE_ORDER_MARK.len() {
            self.phase = Phase::Open;
            out.extend_from_slice(BYTE_ORDER_MARK);
            self.pending.drain(..BYTE_ORDER_MARK.len());
        }
        self.phase == Phase::Open
    }

    /// Splits `window` (the pending block followed by new bytes) into lines, dispatching each
    /// block at its blank line. Returns where the undispatched rest begins; positions in the
    /// block state are relative to that point afterwards.
    fn dispatch_complete(&mut self, window: &[u8], out: &mut Vec<u8>) -> usize {
        let mut block_start = 0;
        let first_new = self.block.scanned;
        let mut pos = first_new;
        if self.block.after_cr && pos < window.len() {
            self.block.after_cr = false;
            if window[pos] == b'\n' && pos == 0 {
                // The CR ended the blank line of a block already dispatched: its LF goes where
                // that block went, out or (for a dropped block) nowhere.
                if !self.dropped_last {
                    out.push(b'\n');
                }
                block_start = 1;
                pos = 1;
            } else if window[pos] == b'\n' {
                pos += 1;
                self.block.line_start = pos;
            }
        }
        while let Some(offset) = window[pos..].iter().position(|&b| b == b'\n' || b == b'\r') {
            let line_end = pos + offset;
            let next = match window[line_end] {
                b'\r' if line_end + 1 == window.len() => {
                    self.block.after_cr = true;
                    line_end + 1
                }
                b'\r' if window[line_end + 1] == b'\n' => line_end + 2,
                _ => line_end + 1,
            };
            let line = block_start + self.block.line_start..line_end;
            if line.is_empty() {
                if line_end - block_start > self.max_event_bytes {
                    self.fail(out);
                    return window.len();
                }
                self.emit(&window[block_start..next], out);
                self.block = Block { after_cr: self.block.after_cr, ..Block::default() };
                block_start = next;
            } else {
                self.read_line(
                    &window[block_start..],
                    line.start - block_start..line_end - block_start,
                );
                self.block.line_start = next - block_start;
            }
            pos = next;
        }
        self.examined += (window.len() - first_new) as u64;
        self.block.scanned = window.len() - block_start;
        block_start
    }

    /// `field = name [ ":" [ " " ] value ]`: keeps where a data value is, notes any other field.
    /// Comment lines (starting with `:`) change nothing.
    fn read_line(&mut self, block: &[u8], line: Range<usize>) {
        let text = &block[line.clone()];
        if text.first() == Some(&b':') {
            return;
        }
        let value_start = if text.starts_with(b"data: ") {
            line.start + 6
        } else if text.starts_with(b"data:") {
            line.start + 5
        } else if text == b"data" {
            line.end
        } else {
            self.block.other_fields = true;
            return;
        };
        self.block.data.push(value_start..line.end);
    }

    /// Writes a dispatched block: data events with their top-level `model` replaced, blocks of
    /// comments as they are, and nothing for a block of fields without data, which the OpenAI
    /// SDKs would try to parse as an empty JSON document.
    fn emit(&mut self, block: &[u8], out: &mut Vec<u8>) {
        self.dropped_last = self.block.data.is_empty() && self.block.other_fields;
        if self.block.data.is_empty() {
            if !self.dropped_last {
                out.extend_from_slice(block);
            }
            return;
        }
        self.answered = true;
        let data = data_of(&self.block.data, block, &mut self.joined);
        self.examined += data.len() as u64;
        if self.scanner.scan(data) != Shape::Object {
            out.extend_from_slice(block);
            return;
        }
        if self.scanner.error && !self.secret.is_empty() {
            let redacted = crate::upstream::redact(data, &self.secret);
            if redacted != data {
                // Written out again as one data line: the event's own framing held the key.
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(&redacted);
                out.extend_from_slice(b"\n\n");
                return;
            }
        }
        if let Some(span) = self.scanner.usage.clone() {
            if let Some(found) = Usage::parse(&data[span]) {
                self.usage = Some(found);
                let choices = self.scanner.choices.clone();
                let usage_only = choices.is_none_or(|span| usage::is_empty_array(&data[span]));
                if usage_only && self.drop_usage_chunks {
                    return;
                }
            }
        }
        let mut copied = 0;
        for span in &self.scanner.model_spans {
            let start = block_offset(&self.block.data, span.start);
            out.extend_from_slice(&block[copied..start]);
            out.extend_from_slice(&self.replacement);
            copied = start + span.len();
        }
        out.extend_from_slice(&block[copied..]);
    }

    fn fail(&mut self, out: &mut Vec<u8>) {
        self.phase = Phase::Failed;
        self.pending = Vec::new();
        let message = format!("upstream event exceeds the limit of {} bytes", self.max_event_bytes);
        out.extend_from_slice(&error_event(&message, "upstream_event_too_large"));
    }
}

/// The event's data: one field's value in place, or several joined by LF into `joined`.
fn data_of<'a>(lines: &[Range<usize>], block: &'a [u8], joined: &'a mut Vec<u8>) -> &'a [u8] {
    if let [only] = lines {
        return &block[only.clone()];
    }
    joined.clear();
    for (index, line) in lines.iter().enumerate() {
        if index > 0 {
            joined.push(b'\n');
        }
        joined.extend_from_slice(&block[line.clone()]);
    }
    joined
}

/// Maps an offset in the joined data back to the block. A JSON string cannot hold a raw line
/// end, so a rewritten value always lies within one data line.
fn block_offset(lines: &[Range<usize>], offset: usize) -> usize {
    let mut line_offset = 0;
    for line in lines {
        if offset < line_offset + line.len() {
            return line.start + offset - line_offset;
        }
        line_offset += line.len() + 1;
    }
    lines.last().map_or(0, |line| line.end)
}

/// An in-band error event in OpenAI's error format, which the SDKs raise as an API error.
#[must_use]
pub fn error_event(message: &str, code: &str) -> Vec<u8> {
    let body = serde_json::json!({
        "error": {"message": message, "type": "upstream_error", "param": null, "code": code}
    });
    format!("data: {body}\n\n").into_bytes()
}

fn json_string(text: &str) -> Vec<u8> {
    serde_json::to_vec(text).unwrap_or_else(|_| b"\"\"".to_vec())
}

#[cfg(test)]
#[path = "sse_tests.rs"]
mod tests;
