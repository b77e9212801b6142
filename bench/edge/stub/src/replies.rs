//! The bodies the stub answers with, shaped like an OpenAI upstream's: a chat completion of
//! about 500 bytes, and chunk events of about 200 bytes each.

use std::fmt::Write as _;

const ID: &str = "chatcmpl-bench-7d0c2a61f4e84b3f9a5e";
const CREATED: u64 = 1_764_763_200;
const MODEL: &str = "\"bench-upstream-model\"";

/// The words a streamed reply is made of, one per chunk, in turn.
const WORDS: [&str; 8] = [" The", " quick", " brown", " fox", " jumps", " over", " the", " dog."];

/// A whole (non-streamed) chat completion naming `model` (a JSON string as written).
pub fn completion(model: Option<&str>) -> String {
    let model = model.unwrap_or(MODEL);
    format!(
        concat!(
            r#"{{"id":"{id}","object":"chat.completion","created":{created},"model":{model},"#,
            r#""choices":[{{"index":0,"message":{{"role":"assistant","#,
            r#""content":"Measured, not asserted: the edge adds what it adds, and this stub "#,
            r#"answers quickly so that the difference shows.","refusal":null,"annotations":[]}},"#,
            r#""logprobs":null,"finish_reason":"stop"}}],"usage":{{"prompt_tokens":42,"#,
            r#""completion_tokens":24,"total_tokens":66,"#,
            r#""prompt_tokens_details":{{"cached_tokens":0,"audio_tokens":0}},"#,
            r#""completion_tokens_details":{{"reasoning_tokens":0,"audio_tokens":0}}}},"#,
            r#""service_tier":"default","system_fingerprint":"fp_bench01"}}"#
        ),
        id = ID,
        created = CREATED,
        model = model,
    )
}

/// The stream's events in order: the role, `chunks - 2` words (at least one), the finish
/// reason, then the usage chunk when asked for, then `[DONE]`.
pub fn events(model: Option<&str>, chunks: u32, include_usage: bool) -> Vec<String> {
    let model = model.unwrap_or(MODEL);
    let chunks = chunks.max(1) as usize;
    let mut events = Vec::with_capacity(chunks + 2);
    for index in 0..chunks {
        let delta = if index == 0 {
            r#"{"role":"assistant","content":""}"#.to_owned()
        } else if index + 1 == chunks && chunks > 2 {
            "{}".to_owned()
        } else {
            format!(r#"{{"content":"{}"}}"#, WORDS[index % WORDS.len()])
        };
        let finish = if index + 1 == chunks && chunks > 2 { r#""stop""# } else { "null" };
        events.push(chunk(model, &delta, finish));
    }
    if include_usage {
        let mut event = String::new();
        let _ = write!(
            event,
            concat!(
                r#"data: {{"id":"{}","object":"chat.completion.chunk","created":{},"#,
                r#""model":{},"choices":[],"usage":{{"prompt_tokens":42,"#,
                r#""completion_tokens":{},"total_tokens":{}}}}}"#,
                "\n\n"
            ),
            ID,
            CREATED,
            model,
            chunks,
            chunks + 42
        );
        events.push(event);
    }
    events.push("data: [DONE]\n\n".to_owned());
    events
}

fn chunk(model: &str, delta: &str, finish: &str) -> String {
    format!(
        concat!(
            r#"data: {{"id":"{}","object":"chat.completion.chunk","created":{},"model":{},"#,
            r#""service_tier":"default","system_fingerprint":"fp_bench01","#,
            r#""choices":[{{"index":0,"delta":{},"logprobs":null,"finish_reason":{}}}]}}"#,
            "\n\n"
        ),
        ID, CREATED, model, delta, finish
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_is_about_500_bytes_and_names_the_model() {
        let body = completion(Some("\"up-1\""));
        assert!((400..700).contains(&body.len()), "{}", body.len());
        assert!(body.contains(r#""model":"up-1""#));
    }

    #[test]
    fn stream_has_the_chunks_asked_for_then_usage_then_done() {
        let events = events(None, 100, true);
        assert_eq!(events.len(), 102);
        assert!(events[0].contains(r#""role":"assistant""#));
        assert!(events[99].contains(r#""finish_reason":"stop""#));
        assert!(events[100].contains(r#""usage""#));
        assert_eq!(events[101], "data: [DONE]\n\n");
        for event in &events[..100] {
            assert!((180..300).contains(&event.len()), "{}", event.len());
            assert!(event.starts_with("data: {") && event.ends_with("}\n\n"));
        }
    }

    #[test]
    fn stream_without_usage_ends_with_done() {
        let events = events(None, 1, false);
        assert_eq!(events.len(), 2);
        assert_eq!(events[1], "data: [DONE]\n\n");
    }
}
