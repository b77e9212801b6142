//! Access control: the client's key checked against the `GATEWAY_API_KEYS` secret and the
//! optional `API_KEYS` KV namespace (keys stored as SHA-256 hex), then the per-key rate limit
//! of the `RATE_LIMITER` binding.

use worker::{Env, Request};

use super::config::Config;
use super::internal;
use crate::auth;
use crate::error::{GatewayError, KeyFault};

const KEYS_BINDING: &str = "API_KEYS";
const LIMITER_BINDING: &str = "RATE_LIMITER";

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
    let store = env.kv(KEYS_BINDING).ok();
    let no_keys = config.client_keys.is_empty() && store.is_none();
    if config.allow_anonymous && (presented.is_none() || no_keys) {
        return Ok(Caller { limit_key: "anonymous".to_owned() });
    }
    if no_keys {
        return Err(GatewayError::InvalidApiKey { fault: KeyFault::NoneConfigured });
    }
    let key = presented.ok_or(GatewayError::InvalidApiKey { fault: KeyFault::Missing })?;
    let digest = auth::digest(key);
    let mut valid = auth::is_accepted(&digest, &config.client_keys);
    if let (false, Some(store)) = (valid, store) {
        let entry = store.get(&auth::to_hex(&digest)).text().await.map_err(internal)?;
        valid = entry.is_some();
    }
    if !valid {
        return Err(GatewayError::InvalidApiKey { fault: KeyFault::Wrong });
    }
    Ok(Caller { limit_key: auth::to_hex(&digest) })
}

/// Counts the request against the caller's limit when a rate limiter is bound.
pub async fn rate_limit(env: &Env, caller: &Caller, config: &Config) -> Result<(), GatewayError> {
    let Ok(limiter) = env.rate_limiter(LIMITER_BINDING) else {
        return Ok(());
    };
    let outcome = limiter.limit(caller.limit_key.clone()).await.map_err(internal)?;
    if outcome.success {
        Ok(())
    } else {
        Err(GatewayError::RateLimited { retry_after_seconds: config.rate_limit_period })
    }
}
