//! Property tests of the streaming rewriter through its public API: streams generated from a
//! grammar of event-stream blocks, cut into reads every which way, checked against an oracle
//! that knows where it wrote each top-level `model` value. A longer run:
//! `PROPTEST_CASES=5000 cargo test --test rewriter_props` (about a minute).

#[path = "rewriter_props/grammar.rs"]
mod grammar;

use grammar::{block, multi_line_cr_block, stream, Block, Data, Meaning, ModelValue, Stream};
use grammar::{Tail, Token};
use persona_gateway::sse::{error_event, Ending, Rewriter, DEFAULT_MAX_EVENT_BYTES};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;

const TRUNCATED: &str = "upstream stream ended in the middle of an event";

/// Streams from the grammar, first block drawn from `first`, made fit for the oracle.
fn streams(first: impl Strategy<Value = Block> + 'static) -> impl Strategy<Value = Stream> {
    stream(first).prop_map(normalise)
}

/// Keeps line ends meaning what the generator meant.
fn normalise(mut stream: Stream) -> Stream {
    let mut previous: &[u8] = b"";
    for block in &mut stream.blocks {
        previous = block.lines.last().map_or(previous, |line| line.end);
        // A CR ending one line and a LF ending the blank line after it would be one CRLF.
        if previous == b"\r" && block.blank == b"\n" {
            block.blank = b"\r\n";
        }
        previous = block.blank;
    }
    if stream.blocks.last().is_none_or(|block| block.lines.is_empty()) {
        stream.tail = Tail::BlankLine;
    }
    stream
}

/// What the properties compare: the output as escaped text (readable in a failure), and how
/// the stream ended.
type Shown = (String, Ending);

fn shown((out, ending): (Vec<u8>, Ending)) -> Shown {
    (out.escape_ascii().to_string(), ending)
}

fn run(persona: &str, reads: &[&[u8]], max_event_bytes: usize) -> (Vec<u8>, Ending) {
    let mut rewriter = Rewriter::with_max_event_bytes(persona, max_event_bytes);
    let mut out = Vec::new();
    for read in reads {
        if !rewriter.push(read, &mut out) {
            break;
        }
    }
    let ending = rewriter.finish(&mut out);
    (out, ending)
}

/// Cuts `input` at each position in `cuts` (a repeated position gives an empty read).
fn cut_at(input: &[u8], mut cuts: Vec<usize>) -> Vec<&[u8]> {
    cuts.sort_unstable();
    let mut reads = Vec::new();
    let mut start = 0;
    for cut in cuts {
        let cut = cut.clamp(start, input.len());
        reads.push(&input[start..cut]);
        start = cut;
    }
    reads.push(&input[start..]);
    reads
}

impl Stream {
    fn byte_order_mark(&self) -> Vec<u8> {
        let mark: &[u8] = if self.byte_order_mark { b"\xEF\xBB\xBF" } else { b"" };
        mark.to_vec()
    }

    fn tail_of(&self, index: usize) -> Tail {
        if index + 1 == self.blocks.len() {
            self.tail
        } else {
            Tail::BlankLine
        }
    }

    /// The stream's bytes, and where cutting them is most awkward: inside each model literal,
    /// after each CR (inside each CRLF), inside each UTF-8 sequence.
    fn input(&self) -> (Vec<u8>, Vec<usize>) {
        let mut out = self.byte_order_mark();
        let mut cuts = Vec::new();
        for (index, block) in self.blocks.iter().enumerate() {
            write_block(block, self.tail_of(index), &mut out, None, &mut cuts);
        }
        let positions = 0..out.len();
        cuts.extend(positions.clone().filter(|&at| out[at] == b'\r').map(|at| at + 1));
        cuts.extend(positions.filter(|&at| (0x80..0xC0).contains(&out[at])));
        (out, cuts)
    }

    /// The oracle: the blocks as generated, the model literals replaced by the persona's,
    /// blocks of fields without data left out, the end completed or turned into an error.
    fn expected(&self) -> (Vec<u8>, Ending) {
        let literal = serde_json::to_vec(self.persona).unwrap_or_default();
        let mut out = self.byte_order_mark();
        for (index, block) in self.blocks.iter().enumerate() {
            let tail = self.tail_of(index);
            match (block.data, tail) {
                (Data::Absent { dropped: true }, _) => {}
                (Data::Broken, Tail::NoLineEnd | Tail::NoBlankLine) => {
                    out.extend(error_event(TRUNCATED, "upstream_truncated"));
                    return (out, Ending::Truncated);
                }
                (Data::Absent { dropped: false }, _) => {
                    write_block(block, tail, &mut out, Some(&literal), &mut Vec::new());
                }
                (Data::Whole | Data::Broken, _) => {
                    write_block(block, tail, &mut out, Some(&literal), &mut Vec::new());
                    out.extend_from_slice(completion(block, tail));
                }
            }
        }
        let answered =
            self.blocks.iter().any(|block| matches!(block.data, Data::Whole | Data::Broken));
        if !answered {
            out.extend(error_event(
                "upstream stream ended without any event",
                "upstream_truncated",
            ));
            return (out, Ending::Truncated);
        }
        (out, Ending::Complete)
    }
}

/// What the rewriter adds after a last data block that the stream did not finish: the blank
/// line, in the style of the line end before it (after a lone CR, a LF would only turn it into
/// one CRLF line end).
fn completion(block: &Block, tail: Tail) -> &'static [u8] {
    let last_end = block.lines.last().map_or(&b"\n"[..], |line| line.end);
    match tail {
        Tail::BlankLine => b"",
        Tail::NoBlankLine if last_end == b"\r" => b"\r",
        Tail::NoBlankLine => b"\n",
        Tail::NoLineEnd => b"\n\n",
    }
}

/// Writes a block as far as `tail` lets it, model literals replaced when `replacement` is
/// given, noting cut points inside each literal otherwise.
fn write_block(
    block: &Block,
    tail: Tail,
    out: &mut Vec<u8>,
    replacement: Option<&[u8]>,
    cuts: &mut Vec<usize>,
) {
    for (index, line) in block.lines.iter().enumerate() {
        for token in &line.tokens {
            match (token, replacement) {
                (Token::Model(_), Some(replacement)) => out.extend_from_slice(replacement),
                (Token::Model(literal), None) => {
                    cuts.extend([out.len() + 1, out.len() + literal.len() / 2]);
                    out.extend_from_slice(literal);
                }
                (Token::Text(bytes), _) => out.extend_from_slice(bytes),
                (Token::Break, _) => {}
            }
        }
        if index + 1 < block.lines.len() || tail != Tail::NoLineEnd {
            out.extend_from_slice(line.end);
        }
    }
    if tail == Tail::BlankLine {
        out.extend_from_slice(block.blank);
    }
}

/// The block's data as an event-stream parser builds it: each `data` field's value, less one
/// leading space, joined by LF.
fn joined_data(block: &Block) -> Vec<u8> {
    let mut values = Vec::new();
    for line in &block.lines {
        let mut bytes = Vec::new();
        let single = Block { lines: vec![line.clone()], ..block.clone() };
        write_block(&single, Tail::NoLineEnd, &mut bytes, None, &mut Vec::new());
        if bytes == b"data" {
            values.push(Vec::new());
        } else if let Some(value) = bytes.strip_prefix(b"data:") {
            values.push(value.strip_prefix(b" ").unwrap_or(value).to_vec());
        }
    }
    values.join(&b'\n')
}

/// Checks that `serde_json` reads the data as the generator meant it.
fn check_meaning(block: &Block) -> Result<(), TestCaseError> {
    let parsed = serde_json::from_slice::<Value>(&joined_data(block));
    match (&block.meaning, parsed) {
        (Meaning::Unchecked, _) => {}
        (Meaning::NotJson, parsed) => prop_assert!(parsed.is_err()),
        (Meaning::OtherValue, parsed) => prop_assert!(parsed.is_ok_and(|value| !value.is_object())),
        (Meaning::Object(model), parsed) => {
            let value = parsed.map_err(|error| TestCaseError::fail(error.to_string()))?;
            prop_assert!(value.is_object());
            let found = value.get("model");
            match model {
                None => prop_assert!(found.is_none()),
                Some(ModelValue::NotString) => prop_assert!(found.is_some_and(|v| !v.is_string())),
                Some(ModelValue::Literal(literal)) => {
                    let decoded = serde_json::from_slice::<String>(literal).ok();
                    prop_assert_eq!(found.and_then(Value::as_str), decoded.as_deref());
                }
            }
        }
    }
    Ok(())
}

/// The oracle's bytes come out whole, in one-byte reads, in random reads and in awkward ones.
fn check_any_reads(stream: &Stream, cuts: &[Index]) -> Result<(), TestCaseError> {
    for block in &stream.blocks {
        check_meaning(block)?;
    }
    let (input, awkward) = stream.input();
    let expected = shown(stream.expected());
    let random = cuts.iter().map(|cut| cut.index(input.len() + 1)).collect();
    let readings = [
        ("one read", vec![&input[..]]),
        ("one-byte reads", input.chunks(1).collect()),
        ("random reads", cut_at(&input, random)),
        ("awkward reads", cut_at(&input, awkward)),
    ];
    for (name, reads) in readings {
        let actual = shown(run(stream.persona, &reads, DEFAULT_MAX_EVENT_BYTES));
        prop_assert_eq!(&actual, &expected, "{}", name);
    }
    Ok(())
}

/// The stream fails exactly when one block, up to its blank line, outgrows the bound, after
/// every block before it went out (checked in one-byte reads, the hardest case).
fn check_bounded(stream: &Stream, bound: usize) -> Result<(), TestCaseError> {
    let (input, _) = stream.input();
    let reads: Vec<&[u8]> = input.chunks(1).collect();
    let free = run(stream.persona, &reads, DEFAULT_MAX_EVENT_BYTES);
    let (out, ending) = run(stream.persona, &reads, bound);
    let held = stream.blocks.iter().enumerate().map(|(index, block)| {
        let tail = stream.tail_of(index);
        let mut bytes = Vec::new();
        write_block(block, tail, &mut bytes, None, &mut Vec::new());
        bytes.len() - if tail == Tail::BlankLine { block.blank.len() } else { 0 }
    });
    let largest = held.max().unwrap_or_default();
    prop_assert_eq!(ending == Ending::Oversized, largest > bound, "largest block {}", largest);
    if ending != Ending::Oversized {
        prop_assert_eq!(shown((out, ending)), shown(free));
        return Ok(());
    }
    let message = format!("upstream event exceeds the limit of {bound} bytes");
    let error = error_event(&message, "upstream_event_too_large");
    let before = out.strip_suffix(error.as_slice());
    prop_assert!(
        before.is_some_and(|before| free.0.starts_with(before)),
        "{:?}",
        shown((out, ending))
    );
    Ok(())
}

proptest! {
    #[test]
    fn any_reads_give_the_oracle_bytes(
        stream in streams(block()),
        cuts in vec(any::<Index>(), 0..16),
    ) {
        check_any_reads(&stream, &cuts)?;
    }

    #[test]
    fn multi_line_data_with_a_cr_at_the_end_of_each_read(
        stream in streams(multi_line_cr_block()),
        cuts in vec(any::<Index>(), 0..16),
    ) {
        check_any_reads(&stream, &cuts)?;
    }

    #[test]
    fn a_bound_fails_the_stream_exactly_when_a_block_outgrows_it(
        stream in streams(block()),
        bound in 8usize..400,
    ) {
        check_bounded(&stream, bound)?;
    }
}

/// Whether `out` ends with a blank line, so that its last event is dispatched.
fn ends_with_blank_line(out: &[u8]) -> bool {
    fn strip_line_end(bytes: &[u8]) -> Option<&[u8]> {
        let stripped = bytes.strip_suffix(b"\r\n").or_else(|| bytes.strip_suffix(b"\n"));
        stripped.or_else(|| bytes.strip_suffix(b"\r"))
    }
    strip_line_end(out).and_then(strip_line_end).is_some()
}

/// Found by the fuzz target: the CR of the blank line ends the dropped block at the end of one
/// read, and the LF that starts the next read must go with the block, not out.
#[test]
fn a_dropped_block_split_inside_its_crlf_blank_line_leaves_nothing() {
    let input: &[u8] = b"id: 1\r\n\r\ndata: {\"model\":\"m\"}\n\n";
    let whole = shown(run("p", &[input], DEFAULT_MAX_EVENT_BYTES));
    let split = shown(run("p", &[&input[..8], &input[8..]], DEFAULT_MAX_EVENT_BYTES));
    assert_eq!(split, whole);
}

/// A stream that stops after `data: ...\r` needs a blank line that a LF would not give: CR LF
/// is one line end.
#[test]
fn a_last_line_ended_by_a_cr_still_gets_its_blank_line() {
    let (out, ending) = run("p", &[b"data: {\"model\":\"m\"}\r"], DEFAULT_MAX_EVENT_BYTES);
    assert_eq!(ending, Ending::Complete);
    assert!(ends_with_blank_line(&out), "{}", out.escape_ascii());
}

/// The bound on one event holds whether the event arrives whole in one read or in pieces.
#[test]
fn the_event_bound_does_not_depend_on_the_reads() {
    let input: &[u8] = b"data: {\"model\":\"m\",\"pad\":\"0123456789\"}\n\n";
    let whole = shown(run("p", &[input], 16));
    let split = shown(run("p", &[&input[..20], &input[20..]], 16));
    assert_eq!(split.1, Ending::Oversized);
    assert_eq!(whole, split);
}
