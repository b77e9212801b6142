//! Tests of request reading and shaping.

use super::*;
use serde_json::{json, Value};

fn persona() -> Persona {
    Persona {
        id: "socrates".into(),
        name: "Socrates".into(),
        description: "Asks.".into(),
        upstream_model: "novita/meta-llama/llama-3.3-70b-instruct".into(),
        created: 0,
        owned_by: "zaguanai".into(),
        defaults: json!({"temperature": 0.8, "max_tokens": 512})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        limits: crate::persona::Limits::default(),
        system_prompt: "You are \"Socrates\".\nAsk.".into(),
    }
}

fn shape(body: &str) -> Result<String, GatewayError> {
    ChatRequest::parse(body.as_bytes())
        .map(|request| request.to_upstream_body(&Prepared::new(persona()), false))
}

/// The parameter a bad request is refused for, `(json)` for a body that is not a JSON object.
fn param_of(body: &[u8]) -> String {
    match ChatRequest::parse(body) {
        Err(
            GatewayError::InvalidParameter { param, .. } | GatewayError::DuplicateKey { param },
        ) => param,
        Err(GatewayError::InvalidJson { .. }) => "(json)".into(),
        other => panic!("expected a 400 for {}: {other:?}", String::from_utf8_lossy(body)),
    }
}

#[test]
fn the_upstream_body_carries_every_field_and_only_swaps_model() {
    let body = r#"{"model":"zaguanai/socrates","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}],"temperature":0.25,"tools":[{"type":"function","function":{"name":"f","parameters":{}}}],"tool_choice":"auto","response_format":{"type":"json_object"},"stop":["\n"],"stream":true,"stream_options":{"include_usage":true},"n":2,"logprobs":true,"x_unknown":{"big":123456789012345678901234567890,"f":1.0e+2}}"#;
    let shaped = shape(body).unwrap_or_default();
    let expected = r#"{"model":"novita/meta-llama/llama-3.3-70b-instruct","messages":[{"role":"system","content":"You are \"Socrates\".\nAsk."},{"role":"system","content":"be brief"},{"role":"user","content":"hi"}],"temperature":0.25,"tools":[{"type":"function","function":{"name":"f","parameters":{}}}],"tool_choice":"auto","response_format":{"type":"json_object"},"stop":["\n"],"stream":true,"stream_options":{"include_usage":true},"n":2,"logprobs":true,"x_unknown":{"big":123456789012345678901234567890,"f":1.0e+2},"max_tokens":512}"#;
    assert_eq!(shaped, expected);
}

#[test]
fn defaults_fill_what_is_missing_or_null_and_never_override() {
    let shaped = shape(
        r#"{"model":"socrates","messages":[{"role":"user","content":"x"}],"temperature":null}"#,
    )
    .unwrap_or_default();
    let value: Value = serde_json::from_str(&shaped).unwrap_or_default();
    assert_eq!(value["temperature"], json!(0.8));
    assert_eq!(value["max_tokens"], json!(512));
    let shaped = shape(r#"{"model":"socrates","messages":[{"role":"user","content":"x"}],"max_completion_tokens":9,"temperature":0}"#)
        .unwrap_or_default();
    let value: Value = serde_json::from_str(&shaped).unwrap_or_default();
    assert_eq!(value["temperature"], json!(0));
    assert_eq!(value.get("max_tokens"), None, "max_completion_tokens already sets the limit");
}

#[test]
fn whitespace_around_messages_keeps_the_array_whole() {
    let shaped = shape("{ \"model\" : \"socrates\" , \"messages\" : \n [ {\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"}]} ] }")
        .unwrap_or_default();
    let value: Value = serde_json::from_str(&shaped).unwrap_or_default();
    assert_eq!(value["messages"].as_array().map(Vec::len), Some(2));
    assert_eq!(value["messages"][0]["role"], "system");
    assert_eq!(value["messages"][1]["content"][0]["text"], "a");
}

#[test]
fn model_and_stream_are_read() {
    let request = ChatRequest::parse(
        br#"{"model":"zaguanai/x","messages":[{"role":"user","content":""}],"stream":true}"#,
    );
    let request = request.ok();
    assert_eq!(request.as_ref().map(|r| r.model.as_str()), Some("zaguanai/x"));
    assert_eq!(request.map(|r| r.stream), Some(true));
}

#[test]
fn each_bad_request_names_its_parameter() {
    let user = r#"[{"role":"user","content":"hi"}]"#;
    let cases: Vec<(String, &str)> = vec![
        ("not json".into(), "(json)"),
        ("{\"model\":".into(), "(json)"),
        ("[1,2]".into(), "(json)"),
        ("\"text\"".into(), "(json)"),
        (String::new(), "(json)"),
        (format!(r#"{{"messages":{user}}}"#), "model"),
        (format!(r#"{{"model":5,"messages":{user}}}"#), "model"),
        (format!(r#"{{"model":"","messages":{user}}}"#), "model"),
        (format!(r#"{{"model":null,"messages":{user}}}"#), "model"),
        (r#"{"model":"a"}"#.into(), "messages"),
        (r#"{"model":"a","messages":null}"#.into(), "messages"),
        (r#"{"model":"a","messages":[]}"#.into(), "messages"),
        (r#"{"model":"a","messages":"hi"}"#.into(), "messages"),
        (r#"{"model":"a","messages":{"role":"user"}}"#.into(), "messages"),
        (r#"{"model":"a","messages":[1]}"#.into(), "messages[0]"),
        (
            r#"{"model":"a","messages":[{"role":"user"},{"content":"x"}]}"#.into(),
            "messages[1].role",
        ),
        (r#"{"model":"a","messages":[{"role":"wizard"}]}"#.into(), "messages[0].role"),
        (r#"{"model":"a","messages":[{"role":7}]}"#.into(), "messages[0]"),
        (format!(r#"{{"model":"a","messages":{user},"stream":"yes"}}"#), "stream"),
        (format!(r#"{{"model":"a","messages":{user},"model":"b"}}"#), "model"),
        (format!(r#"{{"model":"a","messages":{user},"n":1,"n":2}}"#), "n"),
        (
            r#"{"model":"a","messages":[{"role":"user","role":"system"}]}"#.into(),
            "messages[0].role",
        ),
        (format!(r#"{{"model":"\ud800","messages":{user}}}"#), "model"),
        (format!(r#"{{"model":"a","messages":{user},"max_tokens":"500"}}"#), "max_tokens"),
        (format!(r#"{{"model":"a","messages":{user},"max_tokens":true}}"#), "max_tokens"),
        (format!(r#"{{"model":"a","messages":{user},"max_tokens":300.5}}"#), "max_tokens"),
        (format!(r#"{{"model":"a","messages":{user},"max_tokens":1e400}}"#), "max_tokens"),
        (format!(r#"{{"model":"a","messages":{user},"max_tokens":-5}}"#), "max_tokens"),
        (format!(r#"{{"model":"a","messages":{user},"max_tokens":0}}"#), "max_tokens"),
        (
            format!(r#"{{"model":"a","messages":{user},"max_completion_tokens":"9"}}"#),
            "max_completion_tokens",
        ),
    ];
    for (body, param) in cases {
        assert_eq!(param_of(body.as_bytes()), param, "{body}");
    }
    assert_eq!(param_of(b"{\"model\":\"\xff\"}"), "(json)");
}

#[test]
fn every_role_openai_knows_is_accepted() {
    for role in ROLES {
        let body = format!(r#"{{"model":"a","messages":[{{"role":"{role}","content":"x"}}]}}"#);
        assert!(ChatRequest::parse(body.as_bytes()).is_ok(), "{role}");
    }
}

#[test]
fn a_persona_is_named_with_or_without_the_prefix() {
    let cases = [
        ("zaguanai/socrates", Some("socrates")),
        ("socrates", Some("socrates")),
        ("zaguanai/marie-curie", Some("marie-curie")),
        ("zaguanai/", None),
        ("zaguanai/a/b", None),
        ("openai/gpt-4o", None),
        ("zaguanai/Socrates", None),
        ("ZAGUANAI/socrates", None),
        ("", None),
    ];
    for (model, slug) in cases {
        assert_eq!(persona_slug(model, "zaguanai/"), slug, "{model}");
    }
    assert_eq!(persona_slug("p-socrates", "p-"), Some("socrates"));
    assert_eq!(persona_slug("socrates", ""), Some("socrates"));
}

#[test]
fn usage_is_asked_for_only_on_streams_whose_client_did_not() {
    let upstream = |body: &str| {
        let request = ChatRequest::parse(body.as_bytes());
        let shaped =
            request.map(|r| (r.wants_usage(), r.to_upstream_body(&Prepared::new(persona()), true)));
        let (wanted, shaped) = shaped.unwrap_or_default();
        let value: Value = serde_json::from_str(&shaped).unwrap_or_default();
        (wanted, value.get("stream_options").cloned())
    };
    let user = r#""messages":[{"role":"user","content":"x"}]"#;
    let cases = [
        (
            format!(r#"{{"model":"a",{user},"stream":true}}"#),
            false,
            Some(json!({"include_usage": true})),
        ),
        (
            format!(
                r#"{{"model":"a",{user},"stream":true,"stream_options":{{"include_usage":true}}}}"#
            ),
            true,
            Some(json!({"include_usage": true})),
        ),
        (
            format!(
                r#"{{"model":"a",{user},"stream":true,"stream_options":{{"include_obfuscation":false}}}}"#
            ),
            false,
            Some(json!({"include_obfuscation": false, "include_usage": true})),
        ),
        (
            format!(
                r#"{{"model":"a",{user},"stream":true,"stream_options":{{"include_usage":false}}}}"#
            ),
            false,
            Some(json!({"include_usage": true})),
        ),
        (format!(r#"{{"model":"a",{user}}}"#), false, None),
        (
            format!(r#"{{"model":"a",{user},"stream_options":{{"x":1}}}}"#),
            false,
            Some(json!({"x": 1})),
        ),
    ];
    for (body, wanted, options) in cases {
        assert_eq!(upstream(&body), (wanted, options), "{body}");
    }
}

#[test]
fn limits_cap_tokens_and_fix_parameters() {
    let mut limited = persona();
    limited.defaults.remove("max_tokens");
    limited.limits.max_tokens = Some(300);
    limited.limits.fixed = vec!["temperature".into(), "logit_bias".into()];
    let upstream = |body: &str| -> Value {
        let shaped = ChatRequest::parse(body.as_bytes())
            .map(|r| r.to_upstream_body(&Prepared::new(limited.clone()), false));
        serde_json::from_str(&shaped.unwrap_or_default()).unwrap_or_default()
    };
    let user = r#""messages":[{"role":"user","content":"x"}]"#;
    let asked = upstream(&format!(
        r#"{{"model":"a",{user},"max_tokens":5000,"temperature":1.9,"logit_bias":{{"1":5}},"top_p":0.5}}"#
    ));
    assert_eq!(asked["max_tokens"], json!(300));
    assert_eq!(asked["temperature"], json!(0.8), "the persona's default replaces a fixed value");
    assert_eq!(asked.get("logit_bias"), None, "a fixed parameter without a default is dropped");
    assert_eq!(asked["top_p"], json!(0.5));
    let modest = upstream(&format!(r#"{{"model":"a",{user},"max_completion_tokens":200}}"#));
    assert_eq!(modest["max_completion_tokens"], json!(200));
    assert_eq!(modest.get("max_tokens"), None);
    let silent = upstream(&format!(r#"{{"model":"a",{user}}}"#));
    assert_eq!(silent["max_tokens"], json!(300), "a request that asks nothing gets the cap");
    let huge = upstream(&format!(r#"{{"model":"a",{user},"max_tokens":99999999999999999999999}}"#));
    assert_eq!(huge["max_tokens"], json!(300), "past u64 is past any cap");
}
