//! Persona records: what KV holds for each persona, how the gateway checks one, and the public
//! model view that `/v1/models` shows (never the system prompt).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The KV key of one persona record.
#[must_use]
pub fn record_key(slug: &str) -> String {
    format!("persona:{slug}")
}

/// The KV key of the listing: every persona's public view in one value, so that
/// `GET /v1/models` costs one KV read.
pub const INDEX_KEY: &str = "personas:index";

/// One persona as stored in KV under [`record_key`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Persona {
    /// The slug: the model id without the persona prefix.
    pub id: String,
    pub name: String,
    pub description: String,
    /// The Zaguan model that answers for this persona, `provider/model`.
    pub upstream_model: String,
    /// Unix seconds, shown as the model's `created`.
    pub created: i64,
    pub owned_by: String,
    /// Parameters filled in when the client leaves them out.
    #[serde(default)]
    pub defaults: Map<String, Value>,
    /// What clients may not change.
    #[serde(default, skip_serializing_if = "Limits::is_empty")]
    pub limits: Limits,
    pub system_prompt: String,
}

/// A persona's caps on what a client may ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// The most output tokens a request may ask for (`max_tokens` or `max_completion_tokens`);
    /// a larger ask is lowered to it, and a request that asks nothing gets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Parameters the client may not set: the persona's default is sent in their place, or
    /// nothing when it has none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fixed: Vec<String>,
}

impl Limits {
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.max_tokens.is_none() && self.fixed.is_empty()
    }
}

/// What `/v1/models` may show of a persona.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublicPersona {
    pub id: String,
    pub name: String,
    pub description: String,
    pub created: i64,
    pub owned_by: String,
}

impl From<&Persona> for PublicPersona {
    fn from(persona: &Persona) -> Self {
        Self {
            id: persona.id.clone(),
            name: persona.name.clone(),
            description: persona.description.clone(),
            created: persona.created,
            owned_by: persona.owned_by.clone(),
        }
    }
}

/// A persona field that breaks a rule, with the rule in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub reason: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "field `{}`: {}", self.field, self.reason)
    }
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Invalid {
    Invalid { field: field.into(), reason: reason.into() }
}

const MAX_SLUG: usize = 64;
const MAX_NAME: usize = 100;
const MAX_DESCRIPTION: usize = 300;
const MAX_PROMPT: usize = 32 * 1024;

/// A slug is 1 to 64 of `a-z`, `0-9` and `-`, starting with a letter or digit.
#[must_use]
pub fn is_slug(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_SLUG
        && !text.starts_with('-')
        && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// An upstream model is `provider/model`, possibly with more slashes, no empty segment and
/// nothing but visible ASCII.
#[must_use]
pub fn is_upstream_model(text: &str) -> bool {
    text.len() <= 200
        && text.contains('/')
        && text.split('/').all(|segment| !segment.is_empty())
        && text.bytes().all(|b| b.is_ascii_graphic())
}

impl Persona {
    /// Checks every field; the first fault found is returned.
    ///
    /// # Errors
    /// An [`Invalid`] naming the field and the rule it breaks.
    pub fn validate(&self) -> Result<(), Invalid> {
        if !is_slug(&self.id) {
            return Err(invalid(
                "id",
                "must be 1 to 64 of a-z, 0-9 and '-', not starting with '-'",
            ));
        }
        check_text("name", &self.name, MAX_NAME)?;
        check_text("description", &self.description, MAX_DESCRIPTION)?;
        if !is_upstream_model(&self.upstream_model) {
            return Err(invalid(
                "upstream_model",
                "must look like provider/model (visible ASCII, no empty segment)",
            ));
        }
        if self.created < 0 {
            return Err(invalid("created", "must not be before 1970"));
        }
        check_text("owned_by", &self.owned_by, MAX_NAME)?;
        check_text("system_prompt", &self.system_prompt, MAX_PROMPT)?;
        for (key, value) in &self.defaults {
            check_default(key, value)
                .map_err(|reason| invalid(format!("defaults.{key}"), reason))?;
        }
        Ok(())
    }
}

fn check_text(field: &str, text: &str, max: usize) -> Result<(), Invalid> {
    if text.trim().is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if text.len() > max {
        return Err(invalid(field, format!("must be at most {max} bytes")));
    }
    Ok(())
}

/// The parameters a persona may set defaults for, with the range OpenAI accepts.
fn check_default(key: &str, value: &Value) -> Result<(), String> {
    let in_range = |low: f64, high: f64| match value.as_f64() {
        Some(number) if (low..=high).contains(&number) => Ok(()),
        _ => Err(format!("must be a number from {low} to {high}")),
    };
    let positive_integer = || match value.as_u64() {
        Some(number) if number > 0 => Ok(()),
        _ => Err("must be a positive integer".to_owned()),
    };
    match key {
        "temperature" => in_range(0.0, 2.0),
        "top_p" => in_range(0.0, 1.0),
        "presence_penalty" | "frequency_penalty" => in_range(-2.0, 2.0),
        "max_tokens" | "max_completion_tokens" => positive_integer(),
        "seed" => value.as_i64().map(|_| ()).ok_or_else(|| "must be an integer".to_owned()),
        "stop" => match value {
            Value::String(_) => Ok(()),
            Value::Array(items) if items.len() <= 4 && items.iter().all(Value::is_string) => Ok(()),
            _ => Err("must be a string or up to 4 strings".to_owned()),
        },
        _ => {
            Err("is not a parameter a persona may default (temperature, top_p, presence_penalty, \
             frequency_penalty, max_tokens, max_completion_tokens, seed, stop)"
                .to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn socrates() -> Persona {
        Persona {
            id: "socrates".into(),
            name: "Socrates".into(),
            description: "Asks until you know what you think.".into(),
            upstream_model: "novita/meta-llama/llama-3.3-70b-instruct".into(),
            created: 1_700_000_000,
            owned_by: "zaguanai".into(),
            defaults: json!({"temperature": 0.7, "max_tokens": 800})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            limits: Limits::default(),
            system_prompt: "You are Socrates.".into(),
        }
    }

    #[test]
    fn a_complete_persona_is_valid() {
        assert_eq!(socrates().validate(), Ok(()));
    }

    #[test]
    fn each_rule_names_its_field() {
        type Break = Box<dyn Fn(&mut Persona)>;
        let cases: Vec<(&str, Break)> = vec![
            ("id", Box::new(|p| p.id = "Socrates".into())),
            ("id", Box::new(|p| p.id = "-x".into())),
            ("id", Box::new(|p| p.id = "a".repeat(65))),
            ("name", Box::new(|p| p.name = "  ".into())),
            ("description", Box::new(|p| p.description = "d".repeat(301))),
            ("upstream_model", Box::new(|p| p.upstream_model = "gpt-4o".into())),
            ("upstream_model", Box::new(|p| p.upstream_model = "a//b".into())),
            ("upstream_model", Box::new(|p| p.upstream_model = "a/b c".into())),
            ("created", Box::new(|p| p.created = -1)),
            ("owned_by", Box::new(|p| p.owned_by = String::new())),
            ("system_prompt", Box::new(|p| p.system_prompt = "\n".into())),
            (
                "defaults.temperature",
                Box::new(|p| {
                    p.defaults.insert("temperature".into(), json!(3));
                }),
            ),
            (
                "defaults.max_tokens",
                Box::new(|p| {
                    p.defaults.insert("max_tokens".into(), json!(0));
                }),
            ),
            (
                "defaults.stop",
                Box::new(|p| {
                    p.defaults.insert("stop".into(), json!([1]));
                }),
            ),
            (
                "defaults.model",
                Box::new(|p| {
                    p.defaults.insert("model".into(), json!("x/y"));
                }),
            ),
        ];
        for (field, break_it) in cases {
            let mut persona = socrates();
            break_it(&mut persona);
            let fault = persona.validate().err();
            assert_eq!(fault.map(|f| f.field), Some(field.to_owned()), "{field}");
        }
    }

    #[test]
    fn the_public_view_has_no_prompt() {
        let text = serde_json::to_string(&PublicPersona::from(&socrates())).unwrap_or_default();
        assert!(text.contains("\"socrates\""));
        assert!(!text.contains("You are Socrates"));
    }

    #[test]
    fn records_reject_unknown_fields() {
        let text = r#"{"id":"a","name":"A","description":"d","upstream_model":"p/m","created":0,
            "owned_by":"o","system_prompt":"s","prompt":"typo"}"#;
        assert!(serde_json::from_str::<Persona>(text).is_err());
    }
}
