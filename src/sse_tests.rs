//! Tests of the streaming rewriter: the failure cases of `tests/cases/bugs.md`, every recorded
//! stream in `tests/cases/sse/`, and cutting the same stream into reads every which way.

use super::*;

const PERSONA: &str = "zaguanai/socrates";

fn chunk(content: &str) -> String {
    format!(
        "data: {{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\
         \"model\":\"up-model\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{content}\"}},\
         \"finish_reason\":null}}]}}\n\n"
    )
}

/// Runs `reads` through a fresh rewriter; returns the output and how the stream ended.
fn run(reads: &[&[u8]]) -> (Vec<u8>, Ending) {
    let mut rewriter = Rewriter::new(PERSONA);
    let mut out = Vec::new();
    for read in reads {
        rewriter.push(read, &mut out);
    }
    let ending = rewriter.finish(&mut out);
    (out, ending)
}

fn run_text(reads: &[&str]) -> String {
    let reads: Vec<&[u8]> = reads.iter().map(|read| read.as_bytes()).collect();
    String::from_utf8(run(&reads).0).unwrap_or_default()
}

/// Cuts `input` into reads with a small deterministic generator (no crate needed).
fn random_reads(input: &[u8], seed: u64, max_len: usize) -> Vec<&[u8]> {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let mut reads = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        state =
            state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let len = usize::try_from(state >> 33).unwrap_or(1) % max_len + 1;
        let (read, tail) = rest.split_at(len.min(rest.len()));
        reads.push(read);
        rest = tail;
    }
    reads
}

fn one_byte_reads(input: &[u8]) -> Vec<&[u8]> {
    input.chunks(1).collect()
}

#[test]
fn b01_an_event_split_inside_the_model_value_is_rewritten_once() {
    let out = run_text(&[
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"up-mo",
        "del\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n",
        "\ndata: [DONE]\n\n",
    ]);
    let expected = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\
        \"model\":\"zaguanai/socrates\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\
        \"finish_reason\":null}]}\n\ndata: [DONE]\n\n";
    assert_eq!(out, expected);
}

#[test]
fn b02_a_character_split_across_reads_arrives_whole() {
    let first = b"data: {\"object\":\"chat.completion.chunk\",\"model\":\"up-model\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\xE4\xB8";
    let second = "\u{AD}文\"},\"finish_reason\":null}]}\n\n".as_bytes();
    // The second read starts with the last byte of 中 (E4 B8 AD).
    let second = [&[0xAD][..], &second[2..]].concat();
    let (out, ending) = run(&[first, &second, b"data: [DONE]\n\n"]);
    let text = String::from_utf8(out).unwrap_or_default();
    assert_eq!(ending, Ending::Complete);
    assert!(text.contains("\"content\":\"中文\""), "{text}");
    assert!(text.contains("\"model\":\"zaguanai/socrates\""));
    assert!(!text.contains('\u{FFFD}'));
}

#[test]
fn b03_crlf_split_across_reads_and_multi_line_data_make_one_event() {
    let out = run_text(&[
        "data: {\"object\":\"chat.completion.chunk\",\r",
        "\ndata: \"model\":\"up-model\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"A\"}}]}\r\n\r\n",
        "data: [DONE]\r\r",
    ]);
    let expected =
        "data: {\"object\":\"chat.completion.chunk\",\r\ndata: \"model\":\"zaguanai/socrates\",\
        \"choices\":[{\"index\":0,\"delta\":{\"content\":\"A\"}}]}\r\n\r\ndata: [DONE]\r\r";
    assert_eq!(out, expected);
}

#[test]
fn b04_comments_stay_comments() {
    let ping = ": ping - 2025-01-01 00:00:00.000000\r\n\r\n";
    let processing = ": OPENROUTER PROCESSING\n\n";
    let out = run_text(&[ping, processing, &chunk("Hi"), "data: [DONE]\n\n"]);
    let expected =
        format!("{ping}{processing}{}data: [DONE]\n\n", chunk("Hi")).replace("up-model", PERSONA);
    assert_eq!(out, expected);
}

#[test]
fn b05_data_without_a_space_is_data() {
    let input = chunk("Hi").replacen("data: ", "data:", 1) + "data:[DONE]\n\n";
    assert_eq!(run_text(&[&input]), input.replace("up-model", PERSONA));
    // Only one space is optional: the second is part of the value, which is still JSON.
    let spaced = chunk("Hi").replacen("data: ", "data:  ", 1);
    assert_eq!(run_text(&[&spaced]), spaced.replace("up-model", PERSONA));
}

#[test]
fn b07_a_stream_cut_inside_an_event_ends_with_an_error_not_a_finish() {
    let whole = chunk("Hel");
    let cut = &chunk("lo")[..40];
    let (out, ending) = run(&[whole.as_bytes(), cut.as_bytes()]);
    let text = String::from_utf8(out).unwrap_or_default();
    assert_eq!(ending, Ending::Truncated);
    assert!(text.starts_with(&whole.replace("up-model", PERSONA)));
    assert!(text.ends_with("\"code\":\"upstream_truncated\",\"message\":\"upstream stream ended in the middle of an event\",\"param\":null,\"type\":\"upstream_error\"}}\n\n"), "{text}");
    assert!(!text.contains("[DONE]") && !text.contains("\"stop\""));
}

#[test]
fn b08_usage_chunks_keep_their_choices_as_they_are() {
    let finish = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"up-model\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";
    let usage = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"up-model\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n";
    let no_choices = usage.replace("\"choices\":[],", "");
    for usage in [usage, no_choices.as_str()] {
        let input = format!("{finish}{usage}data: [DONE]\n\n");
        assert_eq!(run_text(&[&input]), input.replace("up-model", PERSONA));
    }
}

#[test]
fn b10_an_error_event_mid_stream_passes_unchanged() {
    let error = "data: {\"error\":{\"object\":\"error\",\"message\":\"Requested token count exceeds the model's maximum context length\",\"type\":\"BadRequestError\",\"param\":null,\"code\":400}}\n\n";
    for prefix in ["", "event: error\n"] {
        let input = format!("{}{prefix}{error}data: [DONE]\n\n", chunk("Hi"));
        let expected =
            format!("{}{prefix}{error}data: [DONE]\n\n", chunk("Hi").replace("up-model", PERSONA));
        assert_eq!(run_text(&[&input]), expected);
    }
}

#[test]
fn b17_tool_call_deltas_keep_every_byte() {
    let tool = |delta: &str, finish: &str| {
        format!(
            "data: {{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\
             \"model\":\"up-model\",\"choices\":[{{\"index\":0,\"delta\":{delta},\
             \"finish_reason\":{finish}}}]}}\n\n"
        )
    };
    let input = [
        tool(r#"{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]}"#, "null"),
        tool(r#"{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":\"Par"}}]}"#, "null"),
        tool(r#"{"tool_calls":[{"index":0,"function":{"arguments":"is\"}"}}]}"#, "null"),
        tool("{}", "\"tool_calls\""),
        "data: [DONE]\n\n".to_owned(),
    ]
    .concat();
    let input = input.as_str();
    let out = run_text(&[input]);
    assert_eq!(out, input.replace("\"model\":\"up-model\"", "\"model\":\"zaguanai/socrates\""));
    assert!(out.contains("\"index\":0,\"id\":\"call_1\"") && out.contains("\"arguments\":\"\""));
    assert!(out.contains("{\\\"city\\\":\\\"Par"));
}

#[test]
fn b19_a_200_kb_line_in_16_kb_reads_is_one_event() {
    let input = chunk(&"x".repeat(200_000)) + "data: [DONE]\n\n";
    let reads: Vec<&[u8]> = input.as_bytes().chunks(16 * 1024).collect();
    let (out, ending) = run(&reads);
    assert_eq!(ending, Ending::Complete);
    assert_eq!(out, input.replace("up-model", PERSONA).into_bytes());
}

#[test]
fn an_event_over_the_bound_ends_the_stream_with_an_error() {
    let mut rewriter = Rewriter::with_max_event_bytes(PERSONA, 1000);
    let mut out = Vec::new();
    assert!(rewriter.push(chunk("ok").as_bytes(), &mut out));
    let big = chunk(&"y".repeat(2000));
    let mut open = true;
    for read in big.as_bytes().chunks(100) {
        open = rewriter.push(read, &mut out);
        if !open {
            break;
        }
    }
    assert!(!open);
    assert!(!rewriter.push(b"data: more\n\n", &mut out));
    assert_eq!(rewriter.finish(&mut out), Ending::Oversized);
    let text = String::from_utf8(out).unwrap_or_default();
    let expected_tail = "\"code\":\"upstream_event_too_large\",\"message\":\"upstream event exceeds the limit of 1000 bytes\",\"param\":null,\"type\":\"upstream_error\"}}\n\n";
    assert!(text.starts_with(&chunk("ok").replace("up-model", PERSONA)));
    assert!(text.ends_with(expected_tail), "{text}");
    assert!(!text.contains("yyyy"));
}

#[test]
fn line_ends_of_every_kind_mixed_in_one_stream() {
    let input =
        "data: {\"model\":\"a\"}\r\n\r\ndata: {\"model\":\"b\"}\r\rdata: {\"model\":\"c\"}\n\n\
                 data: {\"model\":\"d\"}\r\n\ndata: {\"model\":\"e\"}\n\r";
    let mut expected = input.to_owned();
    for letter in ["a", "b", "c", "d", "e"] {
        expected = expected.replace(&format!("\"{letter}\""), "\"zaguanai/socrates\"");
    }
    assert_eq!(run_text(&[input]), expected);
}

#[test]
fn field_blocks_without_data_are_dropped_and_other_fields_kept_with_data() {
    let input = "retry: 3000\n\nid: 7\n\nevent: ping\n\n: keep\n\nid: 8\nevent: message\ndata: {\"model\":\"m\"}\n\n";
    let expected = ": keep\n\nid: 8\nevent: message\ndata: {\"model\":\"zaguanai/socrates\"}\n\n";
    assert_eq!(run_text(&[input]), expected);
}

#[test]
fn non_json_and_non_object_data_pass_byte_for_byte() {
    let input = b"data: not json \"model\":\"x\"\n\ndata: \"a string\"\n\ndata: 42\n\ndata: {\"model\":\"x\"\n\ndata: \xff\xfe{\n\ndata\n\n";
    assert_eq!(run(&[input]).0, input.to_vec());
}

#[test]
fn model_values_that_are_not_strings_stay_and_absent_ones_are_not_added() {
    let input = "data: {\"model\":null}\n\ndata: {\"model\":5}\n\ndata: {\"id\":\"x\"}\n\ndata: {\"model\":\"\"}\n\n";
    let expected = "data: {\"model\":null}\n\ndata: {\"model\":5}\n\ndata: {\"id\":\"x\"}\n\ndata: {\"model\":\"zaguanai/socrates\"}\n\n";
    assert_eq!(run_text(&[input]), expected);
}

#[test]
fn a_persona_id_that_needs_escaping_is_escaped() {
    let mut rewriter = Rewriter::new("we\"ird\\id");
    let mut out = Vec::new();
    rewriter.push(b"data: {\"model\":\"m\"}\n\n", &mut out);
    assert_eq!(out, b"data: {\"model\":\"we\\\"ird\\\\id\"}\n\n".to_vec());
}

#[test]
fn a_last_event_without_its_blank_line_is_dispatched() {
    assert_eq!(
        run_text(&[&chunk("a"), "data: [DONE]"]),
        chunk("a").replace("up-model", PERSONA) + "data: [DONE]\n\n"
    );
    assert_eq!(
        run_text(&["data: {\"model\":\"m\"}\n"]),
        "data: {\"model\":\"zaguanai/socrates\"}\n\n"
    );
    assert_eq!(
        run_text(&["data: {\"model\":\"m\"}\r"]),
        "data: {\"model\":\"zaguanai/socrates\"}\r\r",
        "a CR then LF would be one line end, not the blank line that dispatches"
    );
    let nothing = "data: {\"error\":{\"code\":\"upstream_truncated\",\"message\":\"upstream stream ended without any event\",\"param\":null,\"type\":\"upstream_error\"}}\n\n";
    assert_eq!(run_text(&[": only a comment"]), format!(": only a comment{nothing}"));
    assert_eq!(run_text(&["id: 4"]), nothing);
    assert_eq!(run(&[]), (nothing.as_bytes().to_vec(), Ending::Truncated));
}

#[test]
fn a_byte_order_mark_is_kept_and_does_not_hide_the_first_field() {
    let input = "\u{FEFF}data: {\"model\":\"m\"}\n\n";
    let expected = "\u{FEFF}data: {\"model\":\"zaguanai/socrates\"}\n\n";
    assert_eq!(run_text(&[input]), expected);
    let bytes = input.as_bytes();
    assert_eq!(run(&one_byte_reads(bytes)).0, expected.as_bytes());
    assert!(run(&[&bytes[..1]]).0.starts_with(&bytes[..1]));
}

#[test]
fn empty_reads_change_nothing_even_after_a_trailing_cr() {
    let out = run_text(&["data: {\"model\":\"m\"}\r", "", "\n", "", "\r\n", "data: [DONE]\n\n"]);
    assert_eq!(out, "data: {\"model\":\"zaguanai/socrates\"}\r\n\r\ndata: [DONE]\n\n");
}

/// A stream with every feature at once, for the splitting tests.
fn mixed_stream() -> Vec<u8> {
    let mut stream = "\u{FEFF}: hello\r\n\r\nretry: 10\n\n".as_bytes().to_vec();
    stream.extend_from_slice(chunk("caf\u{e9} \u{4e2d}\u{1F600}").as_bytes());
    stream.extend_from_slice(b"event: message\r\ndata: {\"m\\u006fdel\" : \"up\",\r\ndata: \"x\":[{\"model\":\"keep\"}]}\r\r");
    stream.extend_from_slice(b"data:{\"model\":\"\",\"text\":\"\\\"model\\\":\\\"no\\\"\"}\n\n");
    stream.extend_from_slice(b"data: {\"error\":{\"message\":\"boom\"}}\n\ndata: \xff raw\n\n");
    stream.extend_from_slice(b"data: [DONE]\r\n\r\n");
    stream
}

#[test]
fn any_cutting_into_reads_gives_the_same_bytes() {
    let input = mixed_stream();
    let (whole, ending) = run(&[&input]);
    assert_eq!(ending, Ending::Complete);
    assert_eq!(run(&one_byte_reads(&input)).0, whole);
    for first in 0..=input.len() {
        for second in (first..=input.len()).step_by(7) {
            let reads = [&input[..first], &input[first..second], &input[second..]];
            assert_eq!(run(&reads).0, whole, "cut at {first} and {second}");
        }
    }
    for seed in 0..200 {
        assert_eq!(run(&random_reads(&input, seed, 40)).0, whole, "seed {seed}");
    }
}

/// Checks that `output` is `input` with only the top-level `model` strings changed, without
/// using the rewriter's own scanner: `serde_json` says what the events mean, and the bytes around
/// the one rewritten value must match exactly.
fn assert_only_model_changed(input: &[u8], output: &[u8], name: &str) {
    let split = |bytes: &[u8]| -> Vec<Vec<u8>> {
        let text = String::from_utf8_lossy(bytes).replace("\r\n", "\n");
        text.split("\n\n").map(|event| event.as_bytes().to_vec()).collect()
    };
    let (inputs, outputs) = (split(input), split(output));
    assert_eq!(inputs.len(), outputs.len(), "{name}: event count");
    let literal = serde_json::to_string(PERSONA).unwrap_or_default();
    for (before, after) in inputs.iter().zip(&outputs) {
        let data = before.strip_prefix(b"data: ").unwrap_or(before);
        let model = serde_json::from_slice::<serde_json::Value>(data)
            .ok()
            .and_then(|value| value.get("model").and_then(|m| m.as_str()).map(str::to_owned));
        let Some(model) = model else {
            assert_eq!(before, after, "{name}: an event without a top-level model changed");
            continue;
        };
        let found = (0..after.len()).any(|at| {
            after[at..].starts_with(literal.as_bytes()) && {
                let suffix = after.len() - at - literal.len();
                before.len() >= at + suffix
                    && before[..at] == after[..at]
                    && before[before.len() - suffix..] == after[at + literal.len()..]
                    && serde_json::from_slice::<String>(&before[at..before.len() - suffix]).ok()
                        == Some(model.clone())
            }
        });
        assert!(found, "{name}: {}", String::from_utf8_lossy(after));
    }
}

#[test]
fn every_recorded_stream_changes_only_in_model_whole_and_in_any_reads() {
    let folder = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cases/sse");
    let mut files: Vec<_> = std::fs::read_dir(folder)
        .map(|entries| entries.filter_map(Result::ok).map(|entry| entry.path()).collect())
        .unwrap_or_default();
    files.retain(|path| path.extension().is_some_and(|ext| ext == "sse"));
    files.sort();
    assert!(files.len() >= 20, "expected the recorded streams in {folder}");
    for path in files {
        let name = path.display().to_string();
        let input = std::fs::read(&path).unwrap_or_default();
        let (whole, ending) = run(&[&input]);
        assert_eq!(ending, Ending::Complete, "{name}");
        assert_only_model_changed(&input, &whole, &name);
        assert_eq!(run(&one_byte_reads(&input)).0, whole, "{name}: one-byte reads");
        for seed in 0..8 {
            assert_eq!(run(&random_reads(&input, seed, 3000)).0, whole, "{name}: seed {seed}");
        }
    }
}

#[test]
fn a_multi_megabyte_event_in_small_reads_stays_linear() {
    // The pending block is appended to, never rescanned from its start: four times the bytes
    // cost four times the work, however small the reads.
    let examined = |size: usize| {
        let input = chunk(&"z".repeat(size)) + "data: [DONE]\n\n";
        let mut rewriter = Rewriter::new(PERSONA);
        let mut out = Vec::new();
        for read in input.as_bytes().chunks(1460) {
            rewriter.push(read, &mut out);
        }
        assert_eq!(rewriter.finish(&mut out), Ending::Complete);
        assert_eq!(out.len(), input.len() + PERSONA.len() - "up-model".len());
        (rewriter.bytes_examined(), input.len() as u64)
    };
    let (small, small_len) = examined(1 << 20);
    let (large, large_len) = examined(4 << 20);
    assert!(small <= 2 * small_len + 64, "{small} for {small_len} bytes");
    assert!(large <= 2 * large_len + 64, "{large} for {large_len} bytes");
    // Within 2.5 % of four times: 39 × small ≤ 10 × large ≤ 41 × small.
    assert!(39 * small <= 10 * large && 10 * large <= 41 * small, "{small} then {large}");
}

#[test]
fn usage_is_read_and_usage_only_chunks_are_held_back_when_asked() {
    let finish = "data: {\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n";
    let usage = "data: {\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n";
    let no_choices = "data: {\"model\":\"m\",\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2}}\n\n";
    let on_finish = "data: {\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":5,\"total_tokens\":9}}\n\n";
    let expected = |usage: (u64, u64, u64)| {
        Some(crate::usage::Usage {
            prompt_tokens: usage.0,
            completion_tokens: usage.1,
            total_tokens: usage.2,
        })
    };
    let cases = [
        (
            format!("{finish}{usage}data: [DONE]\n\n"),
            format!("{finish}data: [DONE]\n\n"),
            (9, 2, 11),
        ),
        (
            format!("{finish}{no_choices}data: [DONE]\n\n"),
            format!("{finish}data: [DONE]\n\n"),
            (1, 1, 2),
        ),
        (format!("{on_finish}data: [DONE]\n\n"), format!("{on_finish}data: [DONE]\n\n"), (4, 5, 9)),
    ];
    for (input, kept, tokens) in cases {
        for drop in [false, true] {
            let mut rewriter = Rewriter::new("p");
            if drop {
                rewriter = rewriter.dropping_usage_chunks();
            }
            let mut out = Vec::new();
            for read in one_byte_reads(input.as_bytes()) {
                rewriter.push(read, &mut out);
            }
            rewriter.finish(&mut out);
            let shown = if drop { &kept } else { &input };
            assert_eq!(String::from_utf8(out).unwrap_or_default(), shown.replace("\"m\"", "\"p\""));
            assert_eq!(rewriter.usage(), expected(tokens), "{input}");
        }
    }
}

#[test]
fn a_split_crlf_after_a_dropped_block_goes_with_it() {
    let blocks =
        |reads: &[&str]| run_text(reads).split("data: {\"error\"").next().map(str::to_owned);
    assert_eq!(blocks(&["id: 1\r\n\r", "\n"]).as_deref(), Some(""));
    assert_eq!(blocks(&[": keep\r\n\r", "\n"]).as_deref(), Some(": keep\r\n\r\n"));
}

#[test]
fn the_event_bound_does_not_depend_on_the_reads() {
    let input = b"data: {\"model\":\"m\",\"pad\":\"0123456789\"}\n\n";
    for cut in 0..=input.len() {
        let mut rewriter = Rewriter::with_max_event_bytes("p", 16);
        let mut out = Vec::new();
        rewriter.push(&input[..cut], &mut out);
        rewriter.push(&input[cut..], &mut out);
        assert_eq!(rewriter.finish(&mut out), Ending::Oversized, "cut at {cut}");
    }
}

#[test]
fn a_broken_event_at_the_end_is_cut_off_whether_or_not_its_line_ended() {
    for input in ["data: {\"model\":\"m\",\n", "data: {\"model\":\"m\","] {
        let (out, ending) = run(&[input.as_bytes()]);
        assert_eq!(ending, Ending::Truncated, "{input}");
        assert!(String::from_utf8(out).unwrap_or_default().contains("upstream_truncated"));
    }
}

#[test]
fn an_error_event_that_quotes_the_secret_is_redacted() {
    let mut rewriter = Rewriter::new(PERSONA).redacting("sk-upstream-secret");
    let mut out = Vec::new();
    let input = b"data: {\"error\":{\"message\":\"bad key sk-upstream-secret\"}}\n\ndata: {\"model\":\"m\",\"x\":\"sk-upstream-secret\"}\n\n";
    rewriter.push(input, &mut out);
    let text = String::from_utf8(out).unwrap_or_default();
    assert!(
        text.starts_with("data: {\"error\":{\"message\":\"bad key [redacted]\"}}\n\n"),
        "{text}"
    );
    assert!(text.ends_with("\"x\":\"sk-upstream-secret\"}\n\n"), "only error events are searched");
}
