//! Reading personas from the `PERSONAS` KV namespace, with a short-lived copy in the isolate so
//! that busy personas cost no KV read per request.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use worker::Env;

use super::config::Config;
use super::observe::now;
use crate::error::GatewayError;
use crate::persona::{self, Persona, PublicPersona};
use crate::request::{persona_slug, Prepared};

const BINDING: &str = "PERSONAS";

thread_local! {
    /// Personas read recently, with the time they were read (ms since the epoch).
    static CACHE: RefCell<HashMap<String, (Rc<Prepared>, f64)>> = RefCell::new(HashMap::new());
}

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
pub async fn find(env: &Env, config: &Config, model: &str) -> Result<Rc<Prepared>, GatewayError> {
    let not_found = || GatewayError::ModelNotFound { model: model.to_owned() };
    let slug = persona_slug(model, &config.prefix).ok_or_else(not_found)?;
    let max_age_ms = config.persona_cache.as_secs_f64() * 1000.0;
    let cached = CACHE.with_borrow(|cache| {
        cache.get(slug).filter(|(_, read)| now() - read < max_age_ms).map(|(p, _)| Rc::clone(p))
    });
    if let Some(persona) = cached {
        return Ok(persona);
    }
    let text = store(env)?.get(&persona::record_key(slug)).text().await.map_err(super::internal)?;
    let persona = Rc::new(Prepared::new(parse(slug, &text.ok_or_else(not_found)?)?));
    if max_age_ms > 0.0 {
        CACHE.with_borrow_mut(|cache| cache.insert(slug.to_owned(), (Rc::clone(&persona), now())));
    }
    Ok(persona)
}

fn parse(slug: &str, text: &str) -> Result<Persona, GatewayError> {
    let corrupt = || GatewayError::CorruptPersona { slug: slug.to_owned() };
    let persona: Persona = serde_json::from_str(text).map_err(|_| corrupt())?;
    persona.validate().map_err(|_| corrupt())?;
    if persona.id != slug {
        return Err(corrupt());
    }
    Ok(persona)
}
