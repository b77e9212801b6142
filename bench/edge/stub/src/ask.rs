//! What a chat-completion request body asks the stub for: a stream or not, the usage chunk, and
//! the benchmark's `x_bench` field (chunk count and delay), read by walking the top-level JSON
//! object without building it.

/// The stream the benchmark asks for when `x_bench` does not say.
const DEFAULT_CHUNKS: u32 = 100;
const DEFAULT_DELAY_MS: u64 = 1;

/// Bounds, so that a mistyped request cannot keep a thread busy for hours.
const MAX_CHUNKS: u32 = 100_000;
const MAX_DELAY_MS: u64 = 10_000;

/// The reply a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    pub stream: bool,
    pub include_usage: bool,
    pub chunks: u32,
    pub delay_ms: u64,
    /// The request's `model`, as the JSON string it was written as, to echo back.
    pub model: Option<String>,
}

impl Ask {
    /// Reads the fields the stub cares about; a body that is not a JSON object asks for the
    /// defaults.
    pub fn parse_body(body: &[u8]) -> Self {
        let mut ask = Self {
            stream: false,
            include_usage: false,
            chunks: DEFAULT_CHUNKS,
            delay_ms: DEFAULT_DELAY_MS,
            model: None,
        };
        for (key, value) in members(body).unwrap_or_default() {
            match key {
                b"stream" => ask.stream = value == b"true",
                b"model" if value.first() == Some(&b'"') => {
                    ask.model = std::str::from_utf8(value).ok().map(str::to_owned);
                }
                b"stream_options" => ask.include_usage = flag(value, b"include_usage"),
                b"x_bench" => ask.read_bench(value),
                _ => {}
            }
        }
        ask
    }

    fn read_bench(&mut self, object: &[u8]) {
        for (key, value) in members(object).unwrap_or_default() {
            let number = std::str::from_utf8(value).ok().and_then(|t| t.parse::<u64>().ok());
            match (key, number) {
                (b"chunks", Some(n)) => {
                    self.chunks = u32::try_from(n).unwrap_or(MAX_CHUNKS).min(MAX_CHUNKS);
                }
                (b"delay_ms", Some(n)) => self.delay_ms = n.min(MAX_DELAY_MS),
                _ => {}
            }
        }
    }
}

/// Whether `object` has the member `name` set to `true`.
fn flag(object: &[u8], name: &[u8]) -> bool {
    members(object).unwrap_or_default().iter().any(|(key, value)| *key == name && *value == b"true")
}

/// The members of a JSON object as (key as written between its quotes, raw value) pairs, or
/// `None` when `text` is not one well-formed object at this level.
fn members(text: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let mut found = Vec::new();
    let mut at = skip_space(text, 0);
    if text.get(at) != Some(&b'{') {
        return None;
    }
    at = skip_space(text, at + 1);
    if text.get(at) == Some(&b'}') {
        return Some(found);
    }
    loop {
        let key_end = string_end(text, at)?;
        let key = &text[at + 1..key_end - 1];
        at = skip_space(text, key_end);
        if text.get(at) != Some(&b':') {
            return None;
        }
        let start = skip_space(text, at + 1);
        let end = value_end(text, start)?;
        found.push((key, &text[start..end]));
        at = skip_space(text, end);
        match text.get(at) {
            Some(b',') => at = skip_space(text, at + 1),
            Some(b'}') => return Some(found),
            _ => return None,
        }
    }
}

fn skip_space(text: &[u8], mut at: usize) -> usize {
    while text.get(at).is_some_and(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n')) {
        at += 1;
    }
    at
}

/// The index just past the string that starts at `at` (its opening quote).
fn string_end(text: &[u8], at: usize) -> Option<usize> {
    if text.get(at) != Some(&b'"') {
        return None;
    }
    let mut index = at + 1;
    while let Some(&byte) = text.get(index) {
        match byte {
            b'\\' => index += 2,
            b'"' => return Some(index + 1),
            _ => index += 1,
        }
    }
    None
}

/// The index just past the value that starts at `at`: a string, an object or array (nesting
/// counted, strings inside skipped whole), or a number or literal.
fn value_end(text: &[u8], at: usize) -> Option<usize> {
    match text.get(at)? {
        b'"' => string_end(text, at),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut index = at;
            while let Some(&byte) = text.get(index) {
                match byte {
                    b'"' => {
                        index = string_end(text, index)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(index + 1);
                        }
                    }
                    _ => {}
                }
                index += 1;
            }
            None
        }
        _ => {
            let rest = &text[at..];
            let length = rest
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n'))
                .unwrap_or(rest.len());
            (length > 0).then_some(at + length)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stream_usage_and_bench_fields() {
        let body =
            br#"{"model":"m-1","messages":[{"role":"user","content":"a \"stream\": true }"}],
            "stream" : true, "stream_options":{"include_usage":true},
            "x_bench":{"chunks":7,"delay_ms":3}}"#;
        let ask = Ask::parse_body(body);
        assert!(ask.stream);
        assert!(ask.include_usage);
        assert_eq!((ask.chunks, ask.delay_ms), (7, 3));
        assert_eq!(ask.model.as_deref(), Some("\"m-1\""));
    }

    #[test]
    fn defaults_for_a_plain_request_or_garbage() {
        for body in [&br#"{"model":"m","messages":[]}"#[..], b"not json", b"{", b""] {
            let ask = Ask::parse_body(body);
            assert!(!ask.stream);
            assert!(!ask.include_usage);
            assert_eq!((ask.chunks, ask.delay_ms), (DEFAULT_CHUNKS, DEFAULT_DELAY_MS));
        }
    }

    #[test]
    fn nested_stream_keys_do_not_count() {
        let body = br#"{"metadata":{"stream":true},"x":[{"stream":true}]}"#;
        assert!(!Ask::parse_body(body).stream);
    }

    #[test]
    fn bounds_what_a_request_may_ask() {
        let body = br#"{"x_bench":{"chunks":99999999999,"delay_ms":99999999}}"#;
        let ask = Ask::parse_body(body);
        assert_eq!((ask.chunks, ask.delay_ms), (MAX_CHUNKS, MAX_DELAY_MS));
    }
}
