//! What the `PERSONAS` KV namespace holds after a sync: one record per persona plus the public
//! index, written in the bulk file shape that `wrangler kv bulk put` reads.

use std::collections::BTreeSet;

use persona_gateway::persona::{record_key, Persona, PublicPersona, INDEX_KEY};
use serde::{Deserialize, Serialize};

/// One key-value pair of a bulk file; the value is the record's JSON text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BulkEntry {
    pub key: String,
    pub value: String,
}

/// One key as `wrangler kv key list` prints it; other fields (expiration, metadata) are ignored.
#[derive(Debug, Deserialize)]
struct ListedKey {
    name: String,
}

/// The KV contents for `personas`: `persona:<id>` for each, then [`INDEX_KEY`].
///
/// # Errors
/// When a record cannot be written as JSON.
pub fn bulk_entries(personas: &[Persona]) -> serde_json::Result<Vec<BulkEntry>> {
    let mut entries = personas
        .iter()
        .map(|persona| {
            Ok(BulkEntry { key: record_key(&persona.id), value: serde_json::to_string(persona)? })
        })
        .collect::<serde_json::Result<Vec<_>>>()?;
    entries.push(BulkEntry { key: INDEX_KEY.to_owned(), value: index_value(personas)? });
    Ok(entries)
}

/// The index that `GET /v1/models` reads: every persona's public view, sorted by id.
///
/// # Errors
/// When the index cannot be written as JSON.
pub fn index_value(personas: &[Persona]) -> serde_json::Result<String> {
    let mut index: Vec<PublicPersona> = personas.iter().map(PublicPersona::from).collect();
    index.sort_by(|a, b| a.id.cmp(&b.id));
    serde_json::to_string(&index)
}

/// The key names in the JSON that `wrangler kv key list` prints: `[{"name": ...}, ...]`.
///
/// # Errors
/// The parser's message when the text is not such a list.
pub fn parse_key_list(text: &str) -> Result<Vec<String>, String> {
    let keys: Vec<ListedKey> = serde_json::from_str(text.trim())
        .map_err(|error| format!("the key list is not the expected JSON: {error}"))?;
    Ok(keys.into_iter().map(|key| key.name).collect())
}

/// The `persona:*` keys in `listed` that no persona in `personas` defines, sorted.
pub fn stale_keys(listed: &[String], personas: &[Persona]) -> Vec<String> {
    let defined: BTreeSet<String> =
        personas.iter().map(|persona| record_key(&persona.id)).collect();
    let record_prefix = record_key("");
    let stale: BTreeSet<&String> = listed
        .iter()
        .filter(|key| key.starts_with(&record_prefix) && !defined.contains(*key))
        .collect();
    stale.into_iter().cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::tests::persona_file;
    use serde_json::Value;

    fn persona(id: &str) -> Persona {
        crate::source::parse_persona(&persona_file(id), "Shared secret prompt.")
            .unwrap_or_else(|fault| panic!("{fault}"))
    }

    #[test]
    fn the_bulk_file_is_an_array_of_key_and_string_value() {
        let entries = bulk_entries(&[persona("plato")]).unwrap_or_default();
        let file: Value = serde_json::to_value(&entries).unwrap_or_default();
        let items = file.as_array().cloned().unwrap_or_default();

        assert_eq!(items.len(), 2);
        for item in &items {
            let fields = item.as_object().map(serde_json::Map::len);
            assert_eq!(fields, Some(2), "{item}");
            assert!(item["key"].is_string() && item["value"].is_string(), "{item}");
        }
        assert_eq!(items[0]["key"], "persona:plato");
        assert_eq!(items[1]["key"], INDEX_KEY);

        let record: Persona = serde_json::from_str(items[0]["value"].as_str().unwrap_or_default())
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(record, persona("plato"));
    }

    #[test]
    fn the_index_is_sorted_and_has_no_prompt() {
        let index = index_value(&[persona("plato"), persona("aristotle")]).unwrap_or_default();
        assert!(!index.contains("prompt") && !index.contains("Shared secret"), "{index}");
        assert!(!index.contains("upstream") && !index.contains("novita"), "{index}");

        let parsed: Vec<PublicPersona> =
            serde_json::from_str(&index).unwrap_or_else(|error| panic!("{error}"));
        let ids: Vec<&str> = parsed.iter().map(|public| public.id.as_str()).collect();
        assert_eq!(ids, ["aristotle", "plato"]);
        assert_eq!(parsed[0].owned_by, "zaguanai");
        assert_eq!(parsed[0].created, 1_768_435_200);
    }

    #[test]
    fn the_key_list_is_read_by_name() {
        let text = r#"[{"name":"persona:a"},{"name":"personas:index","expiration":1}]"#;
        assert_eq!(parse_key_list(text), Ok(vec!["persona:a".into(), "personas:index".into()]));
        assert_eq!(parse_key_list("\n[]\n"), Ok(vec![]));
        assert!(parse_key_list("Not logged in").is_err());
    }

    #[test]
    fn stale_keys_are_records_no_file_defines() {
        let listed: Vec<String> =
            ["persona:gone", "personas:index", "persona:plato", "other"].map(String::from).to_vec();
        assert_eq!(stale_keys(&listed, &[persona("plato")]), ["persona:gone"]);
    }
}
