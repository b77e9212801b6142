//! One validating pass over JSON text (RFC 8259) that reports the shape of the value and where
//! the top-level `"model"` string values sit, so they can be swapped without re-serialising.

use std::ops::Range;

/// What a scan found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Not one complete JSON value.
    Invalid,
    /// A complete JSON value that is not an object.
    OtherValue,
    /// A complete JSON object; the spans of its top-level `model` strings are in the scan.
    Object,
}

/// Reusable state for [`Scanner::scan`]: the spans found and the container stack.
#[derive(Debug, Default)]
pub struct Scanner {
    /// Byte ranges of each top-level `model` string literal, quotes included.
    pub model_spans: Vec<Range<usize>>,
    /// The value of the last top-level `usage` member.
    pub usage: Option<Range<usize>>,
    /// The value of the last top-level `choices` member.
    pub choices: Option<Range<usize>>,
    /// Whether the object has a top-level `error` member.
    pub error: bool,
    stack: Vec<u8>,
}

impl Scanner {
    /// Scans `text`, which may have white space around the value. After it returns
    /// [`Shape::Object`], `model_spans` lists every top-level `"model"` whose value is a string,
    /// whatever the key's escapes; a `model` that is null, a number or nested stays out.
    pub fn scan(&mut self, text: &[u8]) -> Shape {
        self.model_spans.clear();
        self.usage = None;
        self.choices = None;
        self.error = false;
        self.stack.clear();
        let mut cursor = Cursor { text, pos: 0 };
        cursor.skip_whitespace();
        let shape = if cursor.peek() == Some(b'{') {
            cursor.top_level_object(self).map(|()| Shape::Object)
        } else {
            cursor.value(&mut self.stack).map(|()| Shape::OtherValue)
        };
        cursor.skip_whitespace();
        match shape {
            Some(shape) if cursor.pos == text.len() => shape,
            _ => {
                self.model_spans.clear();
                self.usage = None;
                self.choices = None;
                Shape::Invalid
            }
        }
    }
}

struct Cursor<'a> {
    text: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.pos += 1;
        Some(byte)
    }

    /// Consumes `byte`, or fails.
    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.next()? == byte).then_some(())
    }

    /// `ws = *( %x20 / %x09 / %x0A / %x0D )`
    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// `object = begin-object [ member *( value-separator member ) ] end-object`, at depth one,
    /// noting the string values of members named `model` and the values of `usage` and
    /// `choices`.
    fn top_level_object(&mut self, found: &mut Scanner) -> Option<()> {
        self.eat(b'{')?;
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Some(());
        }
        loop {
            let key = self.string()?;
            self.skip_whitespace();
            self.eat(b':')?;
            self.skip_whitespace();
            let start = self.pos;
            let name = &self.text[key.start + 1..key.end - 1];
            let is_string = self.peek() == Some(b'"');
            self.value(&mut found.stack)?;
            if is_string && key_is(name, b"model") {
                found.model_spans.push(start..self.pos);
            } else if key_is(name, b"usage") {
                found.usage = Some(start..self.pos);
            } else if key_is(name, b"choices") {
                found.choices = Some(start..self.pos);
            } else if key_is(name, b"error") {
                found.error = true;
            }
            self.skip_whitespace();
            match self.next()? {
                b',' => self.skip_whitespace(),
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    /// Any JSON value, nested containers walked with an explicit stack so that deep nesting
    /// cannot exhaust the call stack.
    fn value(&mut self, stack: &mut Vec<u8>) -> Option<()> {
        let floor = stack.len();
        loop {
            self.skip_whitespace();
            match self.peek()? {
                open @ (b'{' | b'[') => {
                    self.pos += 1;
                    self.skip_whitespace();
                    let close = if open == b'{' { b'}' } else { b']' };
                    if self.peek() == Some(close) {
                        self.pos += 1;
                    } else {
                        stack.push(open);
                        if open == b'{' {
                            self.member_name()?;
                        }
                        continue;
                    }
                }
                b'"' => {
                    self.string()?;
                }
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                _ => self.number()?,
            }
            if !self.close_containers(stack, floor)? {
                return Some(());
            }
        }
    }

    /// After a value: closes what ends here. `Some(true)` when another value is expected,
    /// `Some(false)` when the value begun at `floor` is complete.
    fn close_containers(&mut self, stack: &mut Vec<u8>, floor: usize) -> Option<bool> {
        while stack.len() > floor {
            self.skip_whitespace();
            let open = *stack.last()?;
            match (open, self.next()?) {
                (b'{', b',') => {
                    self.skip_whitespace();
                    self.member_name()?;
                    return Some(true);
                }
                (b'[', b',') => return Some(true),
                (b'{', b'}') | (b'[', b']') => {
                    stack.pop();
                }
                _ => return None,
            }
        }
        Some(false)
    }

    /// `string name-separator`
    fn member_name(&mut self) -> Option<()> {
        self.string()?;
        self.skip_whitespace();
        self.eat(b':')
    }

    /// A string literal; returns its span with the quotes. Bytes of 0x80 and above are taken as
    /// they come: the scan never decodes, so it never alters text.
    fn string(&mut self) -> Option<Range<usize>> {
        let start = self.pos;
        self.eat(b'"')?;
        loop {
            while matches!(self.peek(), Some(b) if b != b'"' && b != b'\\' && b >= 0x20) {
                self.pos += 1;
            }
            match self.next()? {
                b'"' => return Some(start..self.pos),
                b'\\' => match self.next()? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                    b'u' => {
                        for _ in 0..4 {
                            self.next().filter(u8::is_ascii_hexdigit)?;
                        }
                    }
                    _ => return None,
                },
                _ => return None,
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.pos + word.len();
        (self.text.get(self.pos..end)? == word).then(|| self.pos = end)
    }

    /// `number = [ minus ] int [ frac ] [ exp ]`
    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.next().filter(u8::is_ascii_digit)?;
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            self.next().filter(u8::is_ascii_digit)?;
            self.digits();
        }
        Some(())
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
    }
}

/// Whether a key's raw text (between the quotes) means `name` (ASCII, at most 8 bytes), escapes
/// decoded.
fn key_is(raw: &[u8], name: &[u8]) -> bool {
    if raw == name {
        return true;
    }
    if !raw.contains(&b'\\') || raw.len() > name.len() * 6 {
        return false;
    }
    let mut decoded = [0u8; 8];
    let mut len = 0;
    let mut rest = raw;
    while let Some((&first, tail)) = rest.split_first() {
        let (byte, tail) = match first {
            b'\\' => match tail.split_first() {
                Some((b'u', hex)) if hex.len() >= 4 => {
                    let code = std::str::from_utf8(&hex[..4]).ok();
                    let code = code.and_then(|h| u8::from_str_radix(h, 16).ok());
                    match code {
                        Some(code) => (code, &hex[4..]),
                        None => return false,
                    }
                }
                Some((&escaped @ (b'"' | b'\\' | b'/'), tail)) => (escaped, tail),
                _ => return false,
            },
            _ => (first, tail),
        };
        if len == decoded.len() {
            return false;
        }
        decoded[len] = byte;
        len += 1;
        rest = tail;
    }
    &decoded[..len] == name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(text: &str) -> (Shape, Vec<String>) {
        let mut scanner = Scanner::default();
        let shape = scanner.scan(text.as_bytes());
        let found = scanner.model_spans.iter().map(|span| text[span.clone()].to_owned()).collect();
        (shape, found)
    }

    #[test]
    fn finds_the_top_level_model_wherever_it_stands() {
        let cases = [
            (r#"{"model":"gpt"}"#, vec![r#""gpt""#]),
            (r#" { "id" : 1 , "model" : "a\"b" } "#, vec![r#""a\"b""#]),
            (r#"{"choices":[{"model":"x"}],"model":""}"#, vec![r#""""#]),
            (r#"{"m\u006fdel":"esc","mo\/del":"no"}"#, vec![r#""esc""#]),
            (r#"{"model":"a","model":"b"}"#, vec![r#""a""#, r#""b""#]),
            (r#"{"usage":{"model":"nested"},"x":"\"model\":\"t\""}"#, vec![]),
            (r#"{"model":null}"#, vec![]),
            (r#"{"model":{"model":"deep"}}"#, vec![]),
            (r#"{"\u006D\u006F\u0064\u0065\u006C":"upper-hex"}"#, vec![r#""upper-hex""#]),
        ];
        for (text, expected) in cases {
            let (shape, found) = spans(text);
            assert_eq!(shape, Shape::Object, "{text}");
            assert_eq!(found, expected, "{text}");
        }
    }

    #[test]
    fn tells_objects_from_other_values_and_from_non_json() {
        let cases = [
            ("[DONE]", Shape::Invalid),
            ("", Shape::Invalid),
            ("{", Shape::Invalid),
            (r#"{"model":"x""#, Shape::Invalid),
            (r#"{"a":1,}"#, Shape::Invalid),
            (r#"{"a" 1}"#, Shape::Invalid),
            ("{\"a\":\"tab\there\"}", Shape::Invalid),
            (r#"{"a":"\x"}"#, Shape::Invalid),
            (r#"{"a":"\u12G4"}"#, Shape::Invalid),
            (r#"{"a":01}"#, Shape::Invalid),
            (r#"{"a":1.}"#, Shape::Invalid),
            (r#"{"a":-}"#, Shape::Invalid),
            (r#"{"a":tru}"#, Shape::Invalid),
            (r#"{"a":[1,2]]}"#, Shape::Invalid),
            (r#"{"a":{"b":1]}"#, Shape::Invalid),
            ("{} {}", Shape::Invalid),
            ("\"just a string\"", Shape::OtherValue),
            ("42", Shape::OtherValue),
            ("-0.5e+10", Shape::OtherValue),
            ("[1, {\"model\": \"x\"}, []]", Shape::OtherValue),
            ("null", Shape::OtherValue),
            (r#"{"a":[{},[],{"b":[true,false,null]}],"c":-1.25E-3}"#, Shape::Object),
            ("{\"a\":\"\u{e4}\u{1F600}\"}", Shape::Object),
        ];
        for (text, expected) in cases {
            assert_eq!(spans(text).0, expected, "{text}");
        }
    }

    #[test]
    fn deep_nesting_does_not_exhaust_the_stack() {
        let depth = 200_000;
        let text = format!("{{\"a\":{}{}}}", "[".repeat(depth), "]".repeat(depth));
        assert_eq!(spans(&text).0, Shape::Object);
        let unbalanced = format!("{{\"a\":{}}}", "[".repeat(depth));
        assert_eq!(spans(&unbalanced).0, Shape::Invalid);
    }

    #[test]
    fn invalid_utf8_inside_strings_is_carried_not_judged() {
        let mut scanner = Scanner::default();
        let text = b"{\"model\":\"m\",\"c\":\"\xff\xfe\"}";
        assert_eq!(scanner.scan(text), Shape::Object);
        assert_eq!(scanner.model_spans, vec![9..12]);
    }

    #[test]
    fn agrees_with_serde_json_on_validity() {
        let samples = [
            r#"{"a":[1,2,{"b":"c"}],"d":1e5}"#,
            r#"{"a":1e}"#,
            r#"{"a":"\ud800"}"#,
            r#"{"a":[,]}"#,
            r#"{"":0}"#,
            r#"{"a":0.0e-0}"#,
            "{ }",
            r#"{"a":"b",}"#,
        ];
        for text in samples {
            let ours = spans(text).0 != Shape::Invalid;
            let theirs = serde_json::from_str::<serde_json::Value>(text).is_ok();
            // serde_json rejects a lone surrogate escape; RFC 8259's grammar allows it.
            if text.contains("ud800") {
                assert!(ours);
                continue;
            }
            assert_eq!(ours, theirs, "{text}");
        }
    }
}
