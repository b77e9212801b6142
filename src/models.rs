//! Personas shown as OpenAI model objects, for `GET /v1/models` and `GET /v1/models/{id}`.

use serde_json::{json, Value};

use crate::persona::PublicPersona;

/// One model object: OpenAI's `id`, `object`, `created` and `owned_by`, plus the persona's
/// name and description.
#[must_use]
pub fn model_object(persona: &PublicPersona, prefix: &str) -> Value {
    json!({
        "id": format!("{prefix}{}", persona.id),
        "object": "model",
        "created": persona.created,
        "owned_by": persona.owned_by,
        "name": persona.name,
        "description": persona.description,
    })
}

/// The model list, in the index's order.
#[must_use]
pub fn model_list(personas: &[PublicPersona], prefix: &str) -> Value {
    let data: Vec<Value> = personas.iter().map(|persona| model_object(persona, prefix)).collect();
    json!({"object": "list", "data": data})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ada() -> PublicPersona {
        PublicPersona {
            id: "ada-lovelace".into(),
            name: "Ada Lovelace".into(),
            description: "Poetical science.".into(),
            created: 1_767_225_600,
            owned_by: "zaguanai".into(),
        }
    }

    #[test]
    fn a_persona_is_an_openai_model_object() {
        let expected = json!({
            "id": "zaguanai/ada-lovelace", "object": "model", "created": 1_767_225_600,
            "owned_by": "zaguanai", "name": "Ada Lovelace", "description": "Poetical science."
        });
        assert_eq!(model_object(&ada(), "zaguanai/"), expected);
    }

    #[test]
    fn the_list_wraps_every_persona() {
        let list = model_list(&[ada(), ada()], "p/");
        assert_eq!(list["object"], "list");
        assert_eq!(list["data"].as_array().map(Vec::len), Some(2));
        assert_eq!(list["data"][0]["id"], "p/ada-lovelace");
    }
}
