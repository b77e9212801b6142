//! Reading a client's chat-completion request and shaping the one sent upstream: the persona's
//! system prompt first, its defaults filled in, its upstream model named, every other field
//! carried over byte for byte.

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::GatewayError;
use crate::persona::{self, Persona};

/// The roles OpenAI's chat-completions API accepts in `messages`.
const ROLES: [&str; 6] = ["system", "developer", "user", "assistant", "tool", "function"];

/// A persona with the JSON text every request to it reuses, escaped once rather than per
/// request (a system prompt runs to kilobytes).
#[derive(Debug)]
pub struct Prepared {
    pub persona: Persona,
    /// `{"role":"system","content":"<the prompt>"}`.
    system_message: String,
    /// The upstream model as a JSON string literal.
    upstream_model: String,
}

impl Prepared {
    #[must_use]
    pub fn new(persona: Persona) -> Self {
        let prompt = json_string(&persona.system_prompt);
        Self {
            system_message: format!("{{\"role\":\"system\",\"content\":{prompt}}}"),
            upstream_model: json_string(&persona.upstream_model),
            persona,
        }
    }
}

/// A parsed request: its fields in order, as the client wrote them.
#[derive(Debug)]
pub struct ChatRequest<'a> {
    fields: Vec<(String, &'a RawValue)>,
    /// The `model` the client asked for.
    pub model: String,
    /// Whether the client asked for a stream.
    pub stream: bool,
}

impl<'a> ChatRequest<'a> {
    /// Parses and checks the fields the gateway reads: `model`, `messages` and `stream`. The
    /// rest are left for the upstream to judge.
    ///
    /// # Errors
    /// A 400 [`GatewayError`] naming the field at fault.
    pub fn parse(body: &'a [u8]) -> Result<Self, GatewayError> {
        let text = std::str::from_utf8(body).map_err(|error| GatewayError::InvalidJson {
            detail: format!("the body is not UTF-8 (invalid byte at {})", error.valid_up_to()),
        })?;
        let Fields(fields) = serde_json::from_str(text).map_err(|error| {
            let message = error.to_string();
            match message.strip_prefix(DUPLICATE) {
                Some(rest) => GatewayError::DuplicateKey {
                    param: rest.split('`').next().unwrap_or_default().to_owned(),
                },
                None if error.classify() == serde_json::error::Category::Data => {
                    invalid_json("the body must be a JSON object")
                }
                None => invalid_json(&message),
            }
        })?;
        for name in ["max_tokens", "max_completion_tokens"] {
            check_token_limit(&fields, name)?;
        }
        check_stream_options(&fields)?;
        let request = Self { model: read_model(&fields)?, stream: read_stream(&fields)?, fields };
        request.check_messages()?;
        Ok(request)
    }

    fn field(&self, name: &str) -> Option<&'a RawValue> {
        find(&self.fields, name)
    }

    fn check_messages(&self) -> Result<(), GatewayError> {
        let Some(raw) = self.field("messages").filter(|raw| raw.get() != "null") else {
            return Err(parameter("messages", "you must provide a `messages` parameter"));
        };
        let messages: Vec<&RawValue> = serde_json::from_str(raw.get())
            .map_err(|_| parameter("messages", "`messages` must be an array of message objects"))?;
        if messages.is_empty() {
            return Err(parameter("messages", "`messages` must contain at least one message"));
        }
        for (index, message) in messages.iter().enumerate() {
            check_message(index, message)?;
        }
        Ok(())
    }

    /// Whether the client asked for the usage chunk of a stream itself.
    #[must_use]
    pub fn wants_usage(&self) -> bool {
        #[derive(Deserialize)]
        struct StreamOptions {
            include_usage: Option<bool>,
        }
        let options = self.field("stream_options").map(|raw| serde_json::from_str(raw.get()));
        matches!(options, Some(Ok(StreamOptions { include_usage: Some(true) })))
    }

    /// The body for the upstream: the same fields in the same order, `model` set to the
    /// persona's upstream model, the persona's system message placed first in `messages`, its
    /// defaults added for parameters the client left out or set to `null`, and its limits
    /// applied. With `ask_usage`, a stream's `stream_options.include_usage` is set to true.
    #[must_use]
    pub fn to_upstream_body(&self, prepared: &Prepared, ask_usage: bool) -> String {
        let persona = &prepared.persona;
        let ask_usage = ask_usage && self.stream && !self.wants_usage();
        let mut body = String::with_capacity(self.size_hint() + prepared.system_message.len() + 64);
        for (name, raw) in &self.fields {
            let fixed = persona.limits.fixed.contains(name);
            let default = persona.defaults.get(name);
            let value = match (name.as_str(), default) {
                ("model", _) => prepared.upstream_model.clone(),
                ("messages", _) => messages_with_system(raw.get(), &prepared.system_message),
                ("stream_options", _) if ask_usage => with_usage(raw.get()),
                (_, Some(default)) if fixed || raw.get() == "null" => default.to_string(),
                (_, None) if fixed => continue,
                ("max_tokens" | "max_completion_tokens", _) => capped(raw.get(), persona),
                _ => raw.get().to_owned(),
            };
            push_member(&mut body, name, &value);
        }
        for (name, value) in &persona.defaults {
            if !self.sets(name) {
                push_member(&mut body, name, &value.to_string());
            }
        }
        if let Some(cap) = persona.limits.max_tokens {
            let has_default = ["max_tokens", "max_completion_tokens"]
                .iter()
                .any(|key| persona.defaults.contains_key(*key));
            if !self.sets("max_tokens") && !has_default {
                push_member(&mut body, "max_tokens", &cap.to_string());
            }
        }
        if ask_usage && self.field("stream_options").is_none() {
            push_member(&mut body, "stream_options", r#"{"include_usage":true}"#);
        }
        if body.is_empty() {
            body.push('{');
        }
        body.push('}');
        body
    }

    /// Whether the client chose this parameter itself. `max_tokens` and
    /// `max_completion_tokens` name one limit, so either counts for both.
    fn sets(&self, name: &str) -> bool {
        let alias = match name {
            "max_tokens" => "max_completion_tokens",
            "max_completion_tokens" => "max_tokens",
            _ => name,
        };
        self.field(name).is_some() || self.field(alias).is_some_and(|raw| raw.get() != "null")
    }

    fn size_hint(&self) -> usize {
        self.fields.iter().map(|(name, raw)| name.len() + raw.get().len() + 4).sum()
    }
}

/// The persona slug a `model` names: `<prefix><slug>` or a bare `<slug>`.
#[must_use]
pub fn persona_slug<'m>(model: &'m str, prefix: &str) -> Option<&'m str> {
    let slug = model.strip_prefix(prefix).filter(|_| !prefix.is_empty()).unwrap_or(model);
    persona::is_slug(slug).then_some(slug)
}

const DUPLICATE: &str = "duplicate key `";

/// The top-level members of the request object, in order, each value kept as raw JSON text.
struct Fields<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Fields<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FieldsVisitor(std::marker::PhantomData))
    }
}

struct FieldsVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for FieldsVisitor<'a> {
    type Value = Fields<'a>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        let mut fields: Vec<(String, &'a RawValue)> = Vec::new();
        while let Some(name) = map.next_key::<String>()? {
            if find(&fields, &name).is_some() {
                return Err(serde::de::Error::custom(format_args!("{DUPLICATE}{name}`")));
            }
            let value = map.next_value()?;
            fields.push((name, value));
        }
        Ok(Fields(fields))
    }
}

fn find<'a>(fields: &[(String, &'a RawValue)], name: &str) -> Option<&'a RawValue> {
    fields.iter().find(|(key, _)| key == name).map(|(_, raw)| *raw)
}

fn read_model(fields: &[(String, &RawValue)]) -> Result<String, GatewayError> {
    let Some(raw) = find(fields, "model") else {
        return Err(parameter("model", "you must provide a model parameter"));
    };
    match serde_json::from_str::<String>(raw.get()) {
        Ok(model) if !model.is_empty() => Ok(model),
        Ok(_) => Err(parameter("model", "`model` must not be empty")),
        Err(_) if raw.get().starts_with('"') => {
            Err(parameter("model", "`model` must be a valid JSON string"))
        }
        Err(_) => Err(parameter("model", "`model` must be a string")),
    }
}

/// A token limit, when set, is a positive whole number written as digits (no sign, fraction or
/// exponent), as OpenAI requires; anything else could slip past a persona's cap.
fn check_token_limit(fields: &[(String, &RawValue)], name: &str) -> Result<(), GatewayError> {
    let Some(raw) = find(fields, name).map(RawValue::get).filter(|raw| *raw != "null") else {
        return Ok(());
    };
    let digits = !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit());
    if digits && !raw.starts_with('0') {
        return Ok(());
    }
    Err(parameter(name, &format!("`{name}` must be a positive integer")))
}

/// `stream_options`, when set, is an object whose `include_usage`, when set, is a boolean: the
/// gateway reads and sets that field, so it checks what it reads.
fn check_stream_options(fields: &[(String, &RawValue)]) -> Result<(), GatewayError> {
    #[derive(Deserialize)]
    struct StreamOptions {
        #[allow(dead_code, reason = "read only to check its type")]
        include_usage: Option<bool>,
    }
    let Some(raw) = find(fields, "stream_options").filter(|raw| raw.get() != "null") else {
        return Ok(());
    };
    if !raw.get().starts_with('{') {
        return Err(parameter("stream_options", "`stream_options` must be an object"));
    }
    serde_json::from_str::<StreamOptions>(raw.get()).map(|_| ()).map_err(|_| {
        parameter(
            "stream_options.include_usage",
            "`stream_options.include_usage` must be a boolean",
        )
    })
}

fn read_stream(fields: &[(String, &RawValue)]) -> Result<bool, GatewayError> {
    match find(fields, "stream").map(RawValue::get) {
        None | Some("null" | "false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(parameter("stream", "`stream` must be a boolean")),
    }
}

/// A message is an object whose `role` is one OpenAI knows.
fn check_message(index: usize, message: &RawValue) -> Result<(), GatewayError> {
    #[derive(Deserialize)]
    struct Message<'a> {
        #[serde(borrow)]
        role: Option<std::borrow::Cow<'a, str>>,
    }
    let param = format!("messages[{index}]");
    let message: Message = serde_json::from_str(message.get()).map_err(|error| {
        if error.to_string().starts_with("duplicate field `role`") {
            GatewayError::DuplicateKey { param: format!("{param}.role") }
        } else {
            parameter(&param, &format!("`{param}` must be an object with a string `role`"))
        }
    })?;
    match message.role.as_deref() {
        Some(role) if ROLES.contains(&role) => Ok(()),
        Some(_) => Err(parameter(
            &format!("{param}.role"),
            &format!("`{param}.role` must be one of {}", ROLES.join(", ")),
        )),
        None => Err(parameter(&format!("{param}.role"), &format!("`{param}` has no `role`"))),
    }
}

/// Appends `"name":value`, opening the object before the first member.
fn push_member(body: &mut String, name: &str, value: &str) {
    body.push(if body.is_empty() { '{' } else { ',' });
    body.push_str(&json_string(name));
    body.push(':');
    body.push_str(value);
}

/// `[` system message `,` the client's messages as they came `]`. The client's array is known
/// to be non-empty, so its own first `[` is followed by at least one element.
fn messages_with_system(raw: &str, system_message: &str) -> String {
    let rest = raw.trim_start().strip_prefix('[').unwrap_or(raw);
    format!("[{system_message},{rest}")
}

/// A token limit lowered to the persona's cap. [`check_token_limit`] let through only digits,
/// so a value too large for `u64` is above any cap.
fn capped(raw: &str, persona: &Persona) -> String {
    match (raw.parse::<u64>(), persona.limits.max_tokens) {
        (Ok(asked), Some(cap)) if asked > cap => cap.to_string(),
        (Err(_), Some(cap)) => cap.to_string(),
        _ => raw.to_owned(),
    }
}

/// The client's `stream_options` with `include_usage` set; anything that is not an object is
/// replaced, as the upstream would reject it anyway.
fn with_usage(raw: &str) -> String {
    let mut options: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(raw).unwrap_or_default();
    options.insert("include_usage".to_owned(), serde_json::Value::Bool(true));
    serde_json::Value::Object(options).to_string()
}

fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

fn parameter(param: &str, message: &str) -> GatewayError {
    GatewayError::InvalidParameter { param: param.to_owned(), message: message.to_owned() }
}

fn invalid_json(detail: &str) -> GatewayError {
    GatewayError::InvalidJson { detail: detail.to_owned() }
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
