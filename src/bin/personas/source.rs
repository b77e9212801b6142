//! One persona file read into a [`Persona`] record: the header keys checked and converted, the
//! shared instructions joined to the body, and the record's own rules applied.

use persona_gateway::persona::{Invalid, Limits, Persona};
use serde_json::{Map, Number, Value};
use toml::Table;

use crate::created::parse_created;
use crate::header::{parse_header, split_sections};

/// The keys a persona header may hold.
pub const HEADER_KEYS: [&str; 8] =
    ["id", "name", "description", "upstream_model", "created", "owned_by", "defaults", "limits"];

/// The owner `/v1/models` shows when a header names none.
pub const DEFAULT_OWNER: &str = "zaguanai";

/// Reads one persona file. `shared` is the content of `_shared.md`.
///
/// # Errors
/// One fault in words, naming the header field or the line where there is one.
pub fn parse_persona(text: &str, shared: &str) -> Result<Persona, String> {
    let sections = split_sections(text)?;
    let header = parse_header(sections.header)?;
    check_keys(&header).map_err(|invalid| invalid.to_string())?;

    let body = sections.body.trim();
    if body.is_empty() {
        return Err("the prompt body after the closing `+++` is empty".to_owned());
    }

    let persona = persona_from_header(&header, join_prompt(shared, body))
        .map_err(|invalid| invalid.to_string())?;
    persona.validate().map_err(|invalid| invalid.to_string())?;
    Ok(persona)
}

/// The system prompt: the shared instructions, a blank line, then the persona's own body.
pub fn join_prompt(shared: &str, body: &str) -> String {
    format!("{}\n\n{}", shared.trim(), body.trim())
}

fn persona_from_header(header: &Table, system_prompt: String) -> Result<Persona, Invalid> {
    let owned_by = match header.get("owned_by") {
        Some(_) => take_string(header, "owned_by")?,
        None => DEFAULT_OWNER.to_owned(),
    };
    Ok(Persona {
        id: take_string(header, "id")?,
        name: take_string(header, "name")?,
        description: take_string(header, "description")?,
        upstream_model: take_string(header, "upstream_model")?,
        created: take_created(header)?,
        owned_by,
        defaults: take_defaults(header)?,
        limits: take_limits(header)?,
        system_prompt,
    })
}

/// Every header key must be one of [`HEADER_KEYS`]; the first unknown one is the fault.
fn check_keys(header: &Table) -> Result<(), Invalid> {
    match header.keys().find(|key| !HEADER_KEYS.contains(&key.as_str())) {
        Some(key) => Err(field_fault(
            key,
            format!("unknown header key (known keys: {})", HEADER_KEYS.join(", ")),
        )),
        None => Ok(()),
    }
}

fn take_string(header: &Table, key: &str) -> Result<String, Invalid> {
    match header.get(key) {
        Some(toml::Value::String(text)) => Ok(text.clone()),
        Some(_) => Err(field_fault(key, "must be a string")),
        None => Err(field_fault(key, "is missing")),
    }
}

fn take_created(header: &Table) -> Result<i64, Invalid> {
    match header.get("created") {
        Some(toml::Value::Datetime(value)) => {
            parse_created(value).map_err(|reason| field_fault("created", reason))
        }
        Some(_) => Err(field_fault("created", "must be a TOML date such as 2026-01-15")),
        None => Err(field_fault("created", "is missing")),
    }
}

fn take_defaults(header: &Table) -> Result<Map<String, Value>, Invalid> {
    let table = match header.get("defaults") {
        Some(toml::Value::Table(table)) => table,
        Some(_) => return Err(field_fault("defaults", "must be a table, `[defaults]`")),
        None => return Ok(Map::new()),
    };
    table
        .iter()
        .map(|(key, value)| match json_from_toml(value) {
            Ok(json) => Ok((key.clone(), json)),
            Err(reason) => Err(field_fault(&format!("defaults.{key}"), reason)),
        })
        .collect()
}

/// `[limits]`: `max_tokens` (a positive integer) and `fixed` (parameter names).
fn take_limits(header: &Table) -> Result<Limits, Invalid> {
    let table = match header.get("limits") {
        Some(toml::Value::Table(table)) => table,
        Some(_) => return Err(field_fault("limits", "must be a table, `[limits]`")),
        None => return Ok(Limits::default()),
    };
    let mut limits = Limits::default();
    for (key, value) in table {
        match (key.as_str(), value) {
            ("max_tokens", toml::Value::Integer(cap)) => {
                let cap = u64::try_from(*cap)
                    .map_err(|_| field_fault("limits.max_tokens", "must be a positive integer"))?;
                limits.max_tokens = Some(cap);
            }
            ("fixed", toml::Value::Array(names)) => {
                limits.fixed = names
                    .iter()
                    .map(|name| name.as_str().map(str::to_owned))
                    .collect::<Option<_>>()
                    .ok_or_else(|| {
                        field_fault("limits.fixed", "must be a list of parameter names")
                    })?;
            }
            ("max_tokens" | "fixed", _) => {
                return Err(field_fault(&format!("limits.{key}"), "has the wrong type"));
            }
            _ => {
                return Err(field_fault(
                    &format!("limits.{key}"),
                    "unknown key (known: max_tokens, fixed)",
                ))
            }
        }
    }
    Ok(limits)
}

/// The JSON value of a TOML value. JSON has no dates and no infinite or NaN numbers.
fn json_from_toml(value: &toml::Value) -> Result<Value, &'static str> {
    Ok(match value {
        toml::Value::String(text) => Value::String(text.clone()),
        toml::Value::Integer(number) => Value::from(*number),
        toml::Value::Float(number) => {
            Value::Number(Number::from_f64(*number).ok_or("must be a finite number")?)
        }
        toml::Value::Boolean(flag) => Value::Bool(*flag),
        toml::Value::Datetime(_) => return Err("must not be a date or time"),
        toml::Value::Array(items) => {
            Value::Array(items.iter().map(json_from_toml).collect::<Result<_, _>>()?)
        }
        toml::Value::Table(table) => Value::Object(
            table
                .iter()
                .map(|(key, item)| Ok((key.clone(), json_from_toml(item)?)))
                .collect::<Result<_, &'static str>>()?,
        ),
    })
}

fn field_fault(field: &str, reason: impl Into<String>) -> Invalid {
    Invalid { field: field.to_owned(), reason: reason.into() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SOCRATES: &str = "+++
id = \"socrates\"
name = \"Socrates\"
description = \"Athenian philosopher who answers questions with better questions.\"
upstream_model = \"novita/meta-llama/llama-3.3-70b-instruct\"
created = 2026-01-15

[defaults]
temperature = 0.8
max_tokens = 1024
stop = [\"Crito:\"]
+++

You are Socrates of Athens.
";

    fn fault_of(text: &str) -> String {
        parse_persona(text, "Be kind.").err().unwrap_or_default()
    }

    #[test]
    fn a_complete_file_becomes_a_record() {
        let persona = parse_persona(SOCRATES, "\n  Be kind.\n\n").ok();
        let expected = Persona {
            id: "socrates".into(),
            name: "Socrates".into(),
            description: "Athenian philosopher who answers questions with better questions.".into(),
            upstream_model: "novita/meta-llama/llama-3.3-70b-instruct".into(),
            created: 1_768_435_200,
            owned_by: "zaguanai".into(),
            defaults: json!({"temperature": 0.8, "max_tokens": 1024, "stop": ["Crito:"]})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            limits: Limits::default(),
            system_prompt: "Be kind.\n\nYou are Socrates of Athens.".into(),
        };
        assert_eq!(persona, Some(expected));
    }

    #[test]
    fn the_shared_prompt_comes_first_after_trimming_both() {
        assert_eq!(join_prompt("\r\n Shared.\r\n", "\n\nOwn.\n \n"), "Shared.\n\nOwn.");
    }

    #[test]
    fn owned_by_may_be_given() {
        let text = SOCRATES.replace("created", "owned_by = \"acme\"\ncreated");
        let persona = parse_persona(&text, "Be kind.").ok();
        assert_eq!(persona.map(|p| p.owned_by), Some("acme".to_owned()));
    }

    #[test]
    fn an_unknown_key_is_named() {
        let fault = fault_of(&SOCRATES.replace("created", "prompt = \"x\"\ncreated"));
        assert!(fault.starts_with("field `prompt`: unknown header key"), "{fault}");
    }

    #[test]
    fn each_header_fault_names_its_field() {
        let cases = [
            ("id = \"socrates\"\n", "", "field `id`: is missing"),
            ("name = \"Socrates\"", "name = 7", "field `name`: must be a string"),
            ("2026-01-15", "\"2026-01-15\"", "field `created`: must be a TOML date"),
            ("2026-01-15", "12:00:00", "field `created`: must be a date"),
            ("2026-01-15", "1969-12-31", "field `created`: must not be before 1970"),
            ("temperature = 0.8", "temperature = 3", "field `defaults.temperature`: must be"),
            ("temperature = 0.8", "temperature = nan", "field `defaults.temperature`: must be"),
            ("temperature = 0.8", "seed = 1979-05-27", "field `defaults.seed`: must not be a"),
            ("upstream_model = \"novita/", "upstream_model = \"/", "field `upstream_model`"),
            ("id = \"socrates\"", "id = \"Socrates\"", "field `id`: must be"),
        ];
        for (from, to, expected) in cases {
            let fault = fault_of(&SOCRATES.replacen(from, to, 1));
            assert!(fault.starts_with(expected), "{to}: {fault}");
        }
    }

    #[test]
    fn defaults_must_be_a_table() {
        let (header, _) = SOCRATES.split_once("[defaults]").unwrap_or_default();
        let text = format!("{header}defaults = 1\n+++\nBody.\n");
        let fault = fault_of(&text);
        assert!(fault.starts_with("field `defaults`: must be a table"), "{fault}");
    }

    #[test]
    fn an_empty_body_is_a_fault() {
        let text = SOCRATES.replace("You are Socrates of Athens.", " \n\t");
        assert!(fault_of(&text).contains("body"));
    }

    #[test]
    fn bad_toml_gives_its_line() {
        let fault = fault_of(&SOCRATES.replace("max_tokens = 1024", "max_tokens = = 1"));
        assert!(fault.starts_with("line 10: bad TOML"), "{fault}");
    }
}
