//! The grammar the property tests draw streams from: blocks of comments, fields and `data:`
//! lines whose joined value is a JSON object (keys in any order, `model` escaped, repeated,
//! nested or absent), another JSON value, `[DONE]`, text or bytes that are not UTF-8.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};

/// Stream bytes as the generator wrote them.
#[derive(Clone, Debug)]
pub(crate) enum Token {
    Text(Vec<u8>),
    /// A top-level `model` string literal, quotes included: the only bytes that may change.
    Model(Vec<u8>),
    /// White space inside JSON written as the end of one `data:` line and the start of the next.
    Break,
}

/// What a block's data means to the rewriter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Data {
    /// No data field: a block of comments passes, a block with any other field is dropped.
    Absent { dropped: bool },
    /// A JSON value or `[DONE]`: complete even when the stream stops right after it.
    Whole,
    /// Anything else: when the stream stops inside its last line, a truncation error.
    Broken,
}

/// What `serde_json` must make of a block's data: a check on the generator's own knowledge.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Meaning {
    /// Not checked: no data, or bytes `serde_json` refuses though the scanner carries them.
    Unchecked,
    /// An object whose last `model` member (if any) is this value.
    Object(Option<ModelValue>),
    OtherValue,
    NotJson,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ModelValue {
    Literal(Vec<u8>),
    NotString,
}

#[derive(Clone, Debug)]
struct Json {
    tokens: Vec<Token>,
    data: Data,
    meaning: Meaning,
}

#[derive(Clone, Debug)]
struct Member {
    tokens: Vec<Token>,
    model: Option<ModelValue>,
    strict: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct Line {
    pub(crate) tokens: Vec<Token>,
    pub(crate) end: &'static [u8],
}

#[derive(Clone, Debug)]
pub(crate) struct Block {
    pub(crate) lines: Vec<Line>,
    pub(crate) blank: &'static [u8],
    pub(crate) data: Data,
    pub(crate) meaning: Meaning,
}

/// How the stream stops after its last block.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Tail {
    BlankLine,
    NoBlankLine,
    NoLineEnd,
}

#[derive(Clone, Debug)]
pub(crate) struct Stream {
    pub(crate) byte_order_mark: bool,
    pub(crate) blocks: Vec<Block>,
    pub(crate) tail: Tail,
    pub(crate) persona: &'static str,
}

const LINE_ENDS: &[&[u8]] = &[b"\n", b"\r\n", b"\r"];
const NESTED_KEYS: &[&str] = &[r#""model""#, r#""m\u006fdel""#, r#""id""#, r#""""#];
const NOT_STRINGS: &[&str] = &["null", "42", r#"{"model":"deep"}"#, r#"["x"]"#, "false"];
/// Strings `serde_json` refuses that the scanner carries: bad UTF-8, a lone surrogate escape.
const LOOSE_STRINGS: &[&[u8]] = &[b"\"\xff\xfe(\"", b"\"\xe4\xb8\"", br#""\ud800""#];
// Tables read better one row of values than one value a line.
#[rustfmt::skip]
const PERSONAS: &[&str] = &["zaguanai/socrates", "we\"ird\\id", "caf\u{e9}/\u{1F600}", "t\tab"];
#[rustfmt::skip]
const SCALARS: &[&str] = &[
    "0", "-0", "1.0e+2", "-1.5E-3", "12345678901234567890", "0.25", "true", "false", "null",
    "\"\"", r#""\"model\":\"x\"""#, "\"caf\u{e9} \u{4e2d} \u{1F600}\"", r#""model""#,
    r#""\ud83d\ude00\/\n\t\u0000\u00e9""#,
];
#[rustfmt::skip]
const MODEL_KEYS: &[&str] =
    &[r#""model""#, r#""m\u006fdel""#, r#""\u006D\u006F\u0064\u0065\u006C""#, r#""mod\u0065l""#];
#[rustfmt::skip]
const OTHER_KEYS: &[&str] = &[
    r#""id""#, r#""Model""#, r#""models""#, r#""mo\/del""#, r#""x\"model\"""#, r#""model ""#,
    "\"\u{fc}\"", r#""choices""#,
];
#[rustfmt::skip]
const MODEL_PARTS: &[&str] = &[
    "up-model", "gpt-4o", r#"\""#, r"\\", r"\u0041", "\u{e9}", "\u{1F600}", r"\ud83d\ude00", r"\/",
];
#[rustfmt::skip]
const FIELDS: &[&str] = &["event: message", "event:error", "id: 7", "id", "retry: 3000", "x: 1"];

fn text(bytes: &[u8]) -> Token {
    Token::Text(bytes.to_vec())
}

fn json(tokens: Vec<Token>, data: Data, meaning: Meaning) -> Json {
    Json { tokens, data, meaning }
}

/// Lines ended in turn by each of `ends`.
fn lines(lines: Vec<Vec<Token>>, ends: &[&'static [u8]]) -> Vec<Line> {
    let lines = lines.into_iter().enumerate();
    lines.map(|(index, tokens)| Line { tokens, end: ends[index % ends.len()] }).collect()
}

/// Optional JSON white space; a `Break` ends the `data:` line.
fn space() -> impl Strategy<Value = Vec<Token>> {
    prop_oneof![
        3 => Just(vec![]),
        1 => Just(vec![text(b" ")]),
        1 => Just(vec![text(b"\t  ")]),
        1 => Just(vec![Token::Break]),
        1 => Just(vec![text(b" "), Token::Break, text(b"\t")]),
    ]
}

fn nested_value() -> impl Strategy<Value = String> {
    select(SCALARS).prop_map(str::to_owned).prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(|items| format!("[{}]", items.join(","))),
            vec((select(NESTED_KEYS), inner), 0..4).prop_map(|members| {
                let members: Vec<String> =
                    members.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                format!("{{{}}}", members.join(", "))
            }),
        ]
    })
}

fn member(key: &str, value: Token, spaces: [Vec<Token>; 3]) -> Vec<Token> {
    let [before, after_key, after_colon] = spaces;
    let mut tokens = before;
    tokens.push(text(key.as_bytes()));
    tokens.extend(after_key);
    tokens.push(text(b":"));
    tokens.extend(after_colon);
    tokens.push(value);
    tokens
}

fn model_member() -> impl Strategy<Value = Member> {
    let literal = vec(select(MODEL_PARTS), 0..4).prop_map(|parts| {
        let literal = format!("\"{}\"", parts.concat()).into_bytes();
        (Token::Model(literal.clone()), ModelValue::Literal(literal))
    });
    let other =
        select(NOT_STRINGS).prop_map(|value| (text(value.as_bytes()), ModelValue::NotString));
    let value = prop_oneof![3 => literal, 1 => other];
    (select(MODEL_KEYS), value, [space(), space(), space()]).prop_map(
        |(key, (token, model), spaces)| Member {
            tokens: member(key, token, spaces),
            model: Some(model),
            strict: true,
        },
    )
}

fn other_member() -> impl Strategy<Value = Member> {
    let strict = nested_value().prop_map(|value| (value.into_bytes(), true));
    let loose = select(LOOSE_STRINGS).prop_map(|value| (value.to_vec(), false));
    let value = prop_oneof![6 => strict, 1 => loose];
    (select(OTHER_KEYS), value, [space(), space(), space()]).prop_map(
        |(key, (value, strict), spaces)| Member {
            tokens: member(key, Token::Text(value), spaces),
            model: None,
            strict,
        },
    )
}

/// A JSON object in random key order: `model` absent, once or repeated, among other members.
fn object() -> BoxedStrategy<Json> {
    (vec(model_member(), 0..3), vec(other_member(), 0..5))
        .prop_flat_map(|(models, others)| {
            let members: Vec<Member> = models.into_iter().chain(others).collect();
            (Just(members).prop_shuffle(), space(), space(), space())
        })
        .prop_map(|(members, before, inside, after)| {
            let mut tokens = before;
            tokens.push(text(b"{"));
            for (index, member) in members.iter().enumerate() {
                if index > 0 {
                    tokens.push(text(b","));
                }
                tokens.extend(member.tokens.iter().cloned());
            }
            tokens.extend(inside);
            tokens.push(text(b"}"));
            tokens.extend(after);
            let model = members.iter().rev().find_map(|member| member.model.clone());
            let strict = members.iter().all(|member| member.strict);
            let meaning = strict.then_some(Meaning::Object(model));
            json(tokens, Data::Whole, meaning.unwrap_or(Meaning::Unchecked))
        })
        .boxed()
}

/// A JSON value that is not an object: a scalar, or an array that may hold objects.
fn other_value() -> impl Strategy<Value = Json> {
    let scalar = select(SCALARS).prop_map(|value| format!(" {value}"));
    let value = prop_oneof![scalar, nested_value().prop_map(|value| format!("[{value}]"))];
    (value, space()).prop_map(|(value, after)| {
        let mut tokens = vec![Token::Text(value.into_bytes())];
        tokens.extend(after);
        json(tokens, Data::Whole, Meaning::OtherValue)
    })
}

fn done() -> Json {
    json(vec![text(b"[DONE]")], Data::Whole, Meaning::NotJson)
}

/// Not JSON: an object cut short or with bytes around it, text, or bytes that are not UTF-8.
fn broken() -> impl Strategy<Value = Json> {
    let corrupted = (object(), 0..3u8).prop_map(|(json, how)| {
        let tokens = json.tokens.into_iter().map(|token| match token {
            Token::Model(literal) => Token::Text(literal),
            other => other,
        });
        corrupt(tokens.collect(), how)
    });
    let ascii = "[ -~]{0,24}".prop_map(|text| vec![Token::Text(format!("~{text}").into_bytes())]);
    let bytes = vec(0x80u8..=0xFF, 0..8)
        .prop_map(|bytes| vec![Token::Text([&[0xFF], &bytes[..]].concat())]);
    prop_oneof![corrupted, ascii, bytes]
        .prop_map(|tokens| json(tokens, Data::Broken, Meaning::NotJson))
}

fn corrupt(mut tokens: Vec<Token>, how: u8) -> Vec<Token> {
    let close = tokens.iter().rposition(|token| matches!(token, Token::Text(t) if t == b"}"));
    match (how, close) {
        (0, Some(close)) => {
            tokens.remove(close);
        }
        (1, _) => tokens.push(text(b"x")),
        _ => tokens.insert(0, text(b"~")),
    }
    tokens
}

/// A comment (`:` and text) or a field that is not `data`; true for a field.
fn other_line() -> impl Strategy<Value = (Vec<u8>, bool)> {
    prop_oneof![
        "[ -~\u{e9}\u{4e2d}]{0,16}".prop_map(|text| (format!(":{text}").into_bytes(), false)),
        select(FIELDS).prop_map(|field| (field.as_bytes().to_vec(), true)),
    ]
}

/// `data:` lines holding `json`, split at its breaks, with other lines among them.
fn data_block(
    json: impl Strategy<Value = Json>,
    ends: impl Strategy<Value = Vec<&'static [u8]>>,
) -> impl Strategy<Value = Block> {
    let others = vec((any::<Index>(), other_line()), 0..3);
    (json, vec(0..3u8, 1..6), others, ends, select(LINE_ENDS)).prop_map(
        |(json, prefixes, others, ends, blank)| {
            let mut data = data_lines(json.tokens, &prefixes);
            for (at, (line, _)) in others {
                data.insert(at.index(data.len() + 1), vec![Token::Text(line)]);
            }
            Block { lines: lines(data, &ends), blank, data: json.data, meaning: json.meaning }
        },
    )
}

/// One `data` field per run of tokens between breaks: `data: `, `data:`, or a bare `data`
/// where the value is empty.
fn data_lines(tokens: Vec<Token>, prefixes: &[u8]) -> Vec<Vec<Token>> {
    let mut values = vec![vec![]];
    for token in tokens {
        match (token, values.last_mut()) {
            (Token::Break, _) => values.push(vec![]),
            (token, Some(value)) => value.push(token),
            (_, None) => {}
        }
    }
    let values = values.into_iter().enumerate();
    let lines = values.map(|(index, value)| {
        let prefix: &[u8] = match prefixes[index % prefixes.len()] {
            0 => b"data: ",
            1 => b"data:",
            _ if value.is_empty() => b"data",
            _ => b"data: ",
        };
        [vec![text(prefix)], value].concat()
    });
    lines.collect()
}

/// Comments and other fields without data, or no line at all (an empty block).
fn field_block() -> impl Strategy<Value = Block> {
    let ends = vec(select(LINE_ENDS), 1..4);
    (vec(other_line(), 0..4), ends, select(LINE_ENDS)).prop_map(|(others, ends, blank)| {
        let data = Data::Absent { dropped: others.iter().any(|(_, field)| *field) };
        let others = others.into_iter().map(|(line, _)| vec![Token::Text(line)]).collect();
        Block { lines: lines(others, &ends), blank, data, meaning: Meaning::Unchecked }
    })
}

pub(crate) fn block() -> BoxedStrategy<Block> {
    let ends = || vec(select(LINE_ENDS), 1..6);
    prop_oneof![
        5 => data_block(object(), ends()).boxed(),
        1 => data_block(Just(done()), ends()).boxed(),
        1 => data_block(other_value(), ends()).boxed(),
        2 => data_block(broken(), ends()).boxed(),
        2 => field_block().boxed(),
    ]
    .boxed()
}

/// An object whose data spans two lines or more, every line ended by a lone CR.
pub(crate) fn multi_line_cr_block() -> impl Strategy<Value = Block> {
    let split = object().prop_map(|mut json| {
        let open =
            json.tokens.iter().position(|token| matches!(token, Token::Text(t) if t == b"{"));
        json.tokens.insert(open.map_or(0, |open| open + 1), Token::Break);
        json
    });
    data_block(split, Just(vec![&b"\r"[..]]))
}

/// A stream: maybe a byte order mark, `first`, up to six blocks more, and an end.
pub(crate) fn stream(first: impl Strategy<Value = Block> + 'static) -> BoxedStrategy<Stream> {
    let tail = prop_oneof![
        2 => Just(Tail::BlankLine),
        1 => Just(Tail::NoBlankLine),
        1 => Just(Tail::NoLineEnd),
    ];
    let rest = vec(block(), 0..6);
    (any::<bool>(), first, rest, tail, select(PERSONAS))
        .prop_map(|(byte_order_mark, first, rest, tail, persona)| {
            let blocks = [vec![first], rest].concat();
            Stream { byte_order_mark, blocks, tail, persona }
        })
        .boxed()
}
