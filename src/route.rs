//! Which endpoint a request is for, decided from its method and path alone.

use crate::error::GatewayError;

/// The endpoints the gateway serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Health,
    ListModels,
    /// One model, its id percent-decoded (SDKs send `zaguanai/x` raw or as `zaguanai%2Fx`).
    RetrieveModel(String),
    ChatCompletions,
}

/// Maps a method and path to a route. `HEAD` is served wherever `GET` is.
///
/// # Errors
/// 404 for a path the gateway does not serve, 405 for a method the path does not take.
pub fn route(method: &str, path: &str) -> Result<Route, GatewayError> {
    let (found, allow) = match path {
        "/health" => (Route::Health, "GET, HEAD"),
        "/v1/models" => (Route::ListModels, "GET, HEAD"),
        "/v1/chat/completions" => (Route::ChatCompletions, "POST"),
        _ => match path.strip_prefix("/v1/models/").filter(|id| !id.is_empty()) {
            Some(id) => (Route::RetrieveModel(percent_decode(id)), "GET, HEAD"),
            None => return Err(unknown(method, path)),
        },
    };
    let allowed = match method {
        "HEAD" => allow.contains("GET"),
        _ => allow.split(", ").any(|name| name == method),
    };
    if allowed {
        Ok(found)
    } else {
        Err(GatewayError::MethodNotAllowed {
            method: method.to_owned(),
            path: path.to_owned(),
            allow,
        })
    }
}

fn unknown(method: &str, path: &str) -> GatewayError {
    GatewayError::UnknownPath { method: method.to_owned(), path: path.to_owned() }
}

/// Decodes `%XX` escapes; a malformed escape stays as it is, and bytes that do not form UTF-8
/// are replaced (such an id names no persona anyway).
#[must_use]
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'%')
            .then(|| bytes.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        if let Some(byte) = escaped {
            decoded.push(byte);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_path_and_method() {
        let cases: [(&str, &str, Result<Route, u16>); 14] = [
            ("GET", "/health", Ok(Route::Health)),
            ("HEAD", "/health", Ok(Route::Health)),
            ("GET", "/v1/models", Ok(Route::ListModels)),
            (
                "GET",
                "/v1/models/zaguanai/socrates",
                Ok(Route::RetrieveModel("zaguanai/socrates".into())),
            ),
            (
                "GET",
                "/v1/models/zaguanai%2Fsocrates",
                Ok(Route::RetrieveModel("zaguanai/socrates".into())),
            ),
            (
                "GET",
                "/v1/models/zaguanai%2fsocrates",
                Ok(Route::RetrieveModel("zaguanai/socrates".into())),
            ),
            ("POST", "/v1/chat/completions", Ok(Route::ChatCompletions)),
            ("GET", "/v1/chat/completions", Err(405)),
            ("PUT", "/v1/chat/completions", Err(405)),
            ("POST", "/v1/models", Err(405)),
            ("DELETE", "/v1/models/x", Err(405)),
            ("GET", "/v1/models/", Err(404)),
            ("POST", "/v1/completions", Err(404)),
            ("GET", "/", Err(404)),
        ];
        for (method, path, expected) in cases {
            let got = route(method, path).map_err(|error| error.status());
            assert_eq!(got, expected, "{method} {path}");
        }
    }

    #[test]
    fn a_405_names_the_allowed_methods() {
        let error = route("GET", "/v1/chat/completions").err();
        assert!(matches!(error, Some(GatewayError::MethodNotAllowed { allow: "POST", .. })));
    }

    #[test]
    fn percent_decoding_leaves_malformed_escapes() {
        assert_eq!(percent_decode("a%2Fb%zz%4"), "a/b%zz%4");
        assert_eq!(percent_decode("%E4%B8%AD"), "中");
        assert_eq!(percent_decode("%FF"), "\u{FFFD}");
        assert_eq!(percent_decode("%"), "%");
    }
}
