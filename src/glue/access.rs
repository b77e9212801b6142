//! Access control: the client's key checked against the `GATEWAY_API_KEYS` secret and the
//! optional `API_KEYS` KV namespace (keys stored as SHA-256 hex), then the per-key rate limit
//! of the `RATE_LIMITER` binding.

use std::cell::RefCell;

use wasm_bindgen::JsCast;
use worker::js_sys::{self, Uint8Array};
use worker::{Env, Request};

use super::config::Config;
use super::internal;
use crate::auth::{self, Digest};
use crate::error::{GatewayError, KeyFault};

const KEYS_BINDING: &str = "API_KEYS";
const LIMITER_BINDING: &str = "RATE_LIMITER";

thread_local! {
    /// The digests of the secret's keys, with the secret text they were made from.
    static SECRET_DIGESTS: RefCell<Option<(String, Vec<Digest>)>> = const { RefCell::new(None) };
}

/// Who is calling, as the rate limiter counts them.
pub struct Caller {
    pub limit_key: String,
}

/// Checks the client's key; with `ALLOW_ANONYMOUS=true` and no key sent, lets it through.
pub async fn authorize(
    request: &Request,
    env: &Env,
    config: &Config,
) -> Result<Caller, GatewayError> {
    let header = request.headers().get("authorization").ok().flatten();
    let presented = auth::bearer(header.as_deref());
    let secret = env
        .var("GATEWAY_API_KEYS")
        .ok()
        .map(|value| value.to_string())
        .unwrap_or_default();
    let store = env.kv(KEYS_BINDING).ok();
    if config.allow_anonymous && (presented.is_none() || (secret.is_empty() && store.is_none())) {
        return Ok(Caller {
            limit_key: "anonymous".to_owned(),
        });
    }
    if secret.trim().is_empty() && store.is_none() {
        return Err(GatewayError::InvalidApiKey {
            fault: KeyFault::NoneConfigured,
        });
    }
    let key = presented.ok_or(GatewayError::InvalidApiKey {
        fault: KeyFault::Missing,
    })?;
    let digest = sha256(key.as_bytes()).await?;
    let accepted = secret_digests(&secret).await?;
    let mut valid = auth::is_accepted(&digest, &accepted);
    if let (false, Some(store)) = (valid, store) {
        let entry = store
            .get(&auth::to_hex(&digest))
            .text()
            .await
            .map_err(internal)?;
        valid = entry.is_some();
    }
    if !valid {
        return Err(GatewayError::InvalidApiKey {
            fault: KeyFault::Wrong,
        });
    }
    Ok(Caller {
        limit_key: auth::to_hex(&digest),
    })
}

/// Counts the request against the caller's limit when a rate limiter is bound.
pub async fn rate_limit(env: &Env, caller: &Caller, config: &Config) -> Result<(), GatewayError> {
    let Ok(limiter) = env.rate_limiter(LIMITER_BINDING) else {
        return Ok(());
    };
    let outcome = limiter
        .limit(caller.limit_key.clone())
        .await
        .map_err(internal)?;
    if outcome.success {
        Ok(())
    } else {
        Err(GatewayError::RateLimited {
            retry_after_seconds: config.rate_limit_period,
        })
    }
}

async fn secret_digests(secret: &str) -> Result<Vec<Digest>, GatewayError> {
    let cached = SECRET_DIGESTS.with_borrow(|cache| {
        cache
            .as_ref()
            .filter(|(text, _)| text == secret)
            .map(|(_, digests)| digests.clone())
    });
    if let Some(digests) = cached {
        return Ok(digests);
    }
    let mut digests = Vec::new();
    for key in auth::configured_keys(secret) {
        digests.push(sha256(key.as_bytes()).await?);
    }
    SECRET_DIGESTS.with_borrow_mut(|cache| *cache = Some((secret.to_owned(), digests.clone())));
    Ok(digests)
}

/// SHA-256 by the platform's Web Crypto, which costs the wasm nothing.
async fn sha256(data: &[u8]) -> Result<Digest, GatewayError> {
    let scope: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
    let subtle = scope
        .crypto()
        .map_err(|e| internal(format!("{e:?}")))?
        .subtle();
    let promise = subtle
        .digest_with_str_and_u8_array("SHA-256", data)
        .map_err(|e| internal(format!("{e:?}")))?;
    let buffer = js_sys::futures::JsFuture::from(promise)
        .await
        .map_err(|e| internal(format!("{e:?}")))?;
    let bytes = Uint8Array::new(&buffer);
    let mut digest = [0u8; 32];
    if bytes.length() as usize != digest.len() {
        return Err(internal("SHA-256 gave a digest of the wrong length"));
    }
    bytes.copy_to(&mut digest);
    Ok(digest)
}
