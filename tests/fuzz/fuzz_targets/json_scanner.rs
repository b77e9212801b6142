//! Fuzzes the JSON scanner against `serde_json`: they must agree on whether bytes are one JSON
//! value and whether it is an object, and the `model` spans must be string literals that decode
//! to the value `serde_json` finds under the top-level `model` key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use persona_gateway::json::{Scanner, Shape};
use serde_json::Value;

fuzz_target!(|text: &[u8]| {
    let mut scanner = Scanner::default();
    let shape = scanner.scan(text);
    check_spans_are_string_literals(text, shape, &scanner);

    // The scanner carries the bytes inside strings without judging their UTF-8; serde_json
    // rejects bad UTF-8, so only valid text can be compared.
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    match serde_json::from_str::<Value>(text) {
        Ok(value) => check_same_meaning(text, shape, &scanner, &value),
        Err(error) => assert!(
            shape == Shape::Invalid || beyond_the_grammar(&error),
            "the scanner takes what serde_json rejects ({error}): {text:?}"
        ),
    }
});

fn check_spans_are_string_literals(text: &[u8], shape: Shape, scanner: &Scanner) {
    if shape != Shape::Object {
        assert!(scanner.model_spans.is_empty(), "spans outside an object");
        return;
    }
    let mut previous_end = 0;
    for span in &scanner.model_spans {
        assert!(previous_end <= span.start && span.end <= text.len(), "{span:?}");
        assert!(span.len() >= 2 && text[span.start] == b'"' && text[span.end - 1] == b'"');
        previous_end = span.end;
    }
}

fn check_same_meaning(text: &str, shape: Shape, scanner: &Scanner, value: &Value) {
    assert_ne!(shape, Shape::Invalid, "serde_json takes what the scanner rejects: {text:?}");
    assert_eq!(shape == Shape::Object, value.is_object(), "{text:?}");
    // serde_json keeps the last of duplicated keys; the scanner lists every string one.
    match value.get("model").and_then(Value::as_str) {
        Some(model) => {
            let last = scanner.model_spans.last().map(|span| &text[span.clone()]);
            let decoded = last.and_then(|literal| serde_json::from_str::<String>(literal).ok());
            assert_eq!(decoded.as_deref(), Some(model), "{text:?}");
        }
        None if value.get("model").is_none() => {
            assert!(scanner.model_spans.is_empty(), "a span without a model key: {text:?}");
        }
        None => {}
    }
}

/// `serde_json` refusals that RFC 8259's grammar allows: lone surrogate escapes, numbers too
/// large for an f64, nesting deeper than its recursion limit.
fn beyond_the_grammar(error: &serde_json::Error) -> bool {
    let message = error.to_string();
    ["surrogate", "hex escape", "unicode code point", "number out of range", "recursion limit"]
        .iter()
        .any(|known| message.contains(known))
}
