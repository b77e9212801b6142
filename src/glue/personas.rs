//! Reading personas from the `PERSONAS` KV namespace.

use worker::Env;

use crate::error::GatewayError;
use crate::persona::{self, Persona, PublicPersona};
use crate::request::persona_slug;

const BINDING: &str = "PERSONAS";

fn store(env: &Env) -> Result<worker::KvStore, GatewayError> {
    env.kv(BINDING).map_err(|_| GatewayError::Misconfigured {
        what: format!("the KV namespace `{BINDING}` is not bound"),
    })
}

/// Every persona's public view: one KV read.
pub async fn index(env: &Env) -> Result<Vec<PublicPersona>, GatewayError> {
    let text = store(env)?.get(persona::INDEX_KEY).text().await.map_err(super::internal)?;
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    serde_json::from_str(&text)
        .map_err(|_| GatewayError::CorruptPersona { slug: persona::INDEX_KEY.to_owned() })
}

/// The persona a client's `model` names, or 404 `model_not_found`.
pub async fn find(env: &Env, prefix: &str, model: &str) -> Result<Persona, GatewayError> {
    let not_found = || GatewayError::ModelNotFound { model: model.to_owned() };
    let slug = persona_slug(model, prefix).ok_or_else(not_found)?;
    let text = store(env)?.get(&persona::record_key(slug)).text().await.map_err(super::internal)?;
    let text = text.ok_or_else(not_found)?;
    let corrupt = || GatewayError::CorruptPersona { slug: slug.to_owned() };
    let persona: Persona = serde_json::from_str(&text).map_err(|_| corrupt())?;
    persona.validate().map_err(|_| corrupt())?;
    if persona.id != slug {
        return Err(corrupt());
    }
    Ok(persona)
}
