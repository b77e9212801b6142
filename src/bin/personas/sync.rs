//! `personas sync`: writes the checked personas to the `PERSONAS` KV namespace through wrangler,
//! then deletes the records that no file defines any more.

use std::fs;
use std::path::Path;

use persona_gateway::persona::{record_key, Persona};
use serde::Serialize;

use crate::kv::{bulk_entries, parse_key_list, stale_keys};
use crate::wrangler::{Target, Wrangler};

/// The bulk file handed to `wrangler kv bulk put`, relative to the repo root.
pub const BULK_FILE: &str = "target/personas-kv.json";

/// The key list handed to `wrangler kv bulk delete`.
const STALE_FILE: &str = "target/personas-kv-stale.json";

/// Puts every persona and the index, then removes stale records; returns the summary line.
///
/// # Errors
/// What failed, in words, with wrangler's output when it was wrangler.
pub fn sync_personas(personas: &[Persona], target: Target) -> Result<String, String> {
    let label = target.label();
    let wrangler = Wrangler::find(target)?;

    // Put before deleting, so that readers never see fewer personas than either version has.
    let entries = bulk_entries(personas).map_err(|error| format!("cannot encode: {error}"))?;
    write_json(Path::new(BULK_FILE), &entries)?;
    wrangler.bulk_put(Path::new(BULK_FILE))?;

    let listed = parse_key_list(&wrangler.list_keys(&record_key(""))?)?;
    let stale = stale_keys(&listed, personas);
    if !stale.is_empty() {
        write_json(Path::new(STALE_FILE), &stale)?;
        wrangler.bulk_delete(Path::new(STALE_FILE))?;
    }

    let noun = if personas.len() == 1 { "persona" } else { "personas" };
    Ok(format!("synced {} {noun} to {label} KV (removed {} stale)", personas.len(), stale.len()))
}

/// Writes `value` as JSON to `file`, creating its folder.
fn write_json(file: &Path, value: &impl Serialize) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|error| format!("cannot encode {}: {error}", file.display()))?;
    if let Some(folder) = file.parent() {
        fs::create_dir_all(folder)
            .map_err(|error| format!("cannot create {}: {error}", folder.display()))?;
    }
    fs::write(file, text).map_err(|error| format!("cannot write {}: {error}", file.display()))
}
