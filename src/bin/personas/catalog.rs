//! The persona folder read as a whole: `_shared.md`, every `<id>.md`, and the rules that span
//! files (each id matches its file name and appears once).

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use persona_gateway::persona::Persona;

use crate::source::parse_persona;

/// The file every persona's system prompt starts with.
pub const SHARED_FILE: &str = "_shared.md";

/// Something wrong with one file of the folder (or the folder itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub file: PathBuf,
    pub detail: String,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.detail)
    }
}

impl Fault {
    fn new(file: &Path, detail: impl Into<String>) -> Self {
        Self { file: file.to_path_buf(), detail: detail.into() }
    }
}

/// A persona together with the file that defines it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub file: PathBuf,
    pub persona: Persona,
}

/// The persona folder after reading: the personas without fault and every fault found.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Sorted by id; a persona whose file has a fault is left out.
    pub entries: Vec<Entry>,
    /// Sorted by file.
    pub faults: Vec<Fault>,
}

/// Reads and checks every persona in `dir`.
pub fn read_catalog(dir: &Path) -> Catalog {
    let files = match list_persona_files(dir) {
        Ok(files) => files,
        Err(fault) => return Catalog { entries: Vec::new(), faults: vec![fault] },
    };
    let mut faults = Vec::new();
    let shared = read_shared(dir).unwrap_or_else(|fault| {
        faults.push(fault);
        String::new()
    });

    let mut entries = Vec::new();
    for file in files {
        match read_entry(&file, &shared) {
            Ok(entry) => entries.push(entry),
            Err(fault) => faults.push(fault),
        }
    }
    faults.extend(entries.iter().filter_map(check_file_name));
    faults.extend(find_duplicates(&entries));
    if entries.is_empty() && faults.is_empty() {
        faults.push(Fault::new(dir, "holds no persona files (`<id>.md`)"));
    }

    entries.retain(|entry| faults.iter().all(|fault| fault.file != entry.file));
    entries.sort_by(|a, b| a.persona.id.cmp(&b.persona.id));
    faults.sort_by(|a, b| a.file.cmp(&b.file));
    Catalog { entries, faults }
}

/// The persona files of `dir`, sorted: `*.md` whose name does not start with `_`.
fn list_persona_files(dir: &Path) -> Result<Vec<PathBuf>, Fault> {
    let unreadable =
        |error: std::io::Error| Fault::new(dir, format!("cannot read folder: {error}"));
    let mut files = Vec::new();

    for item in fs::read_dir(dir).map_err(unreadable)? {
        let item = item.map_err(unreadable)?;
        let path = item.path();
        let name = item.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('_') || path.extension().is_none_or(|extension| extension != "md") {
            continue;
        }
        if item.file_type().is_ok_and(|kind| kind.is_dir()) {
            continue;
        }
        files.push(path);
    }
    files.sort();
    Ok(files)
}

fn read_shared(dir: &Path) -> Result<String, Fault> {
    let file = dir.join(SHARED_FILE);
    let text = fs::read_to_string(&file).map_err(|error| {
        let detail = match error.kind() {
            std::io::ErrorKind::NotFound => {
                "is missing; every persona's system prompt starts with it".to_owned()
            }
            _ => format!("cannot read: {error}"),
        };
        Fault::new(&file, detail)
    })?;

    if text.trim().is_empty() {
        return Err(Fault::new(
            &file,
            "is empty; it must hold the instructions all personas share",
        ));
    }
    Ok(text)
}

fn read_entry(file: &Path, shared: &str) -> Result<Entry, Fault> {
    let text = fs::read_to_string(file)
        .map_err(|error| Fault::new(file, format!("cannot read: {error}")))?;
    let persona = parse_persona(&text, shared).map_err(|detail| Fault::new(file, detail))?;
    Ok(Entry { file: file.to_path_buf(), persona })
}

/// The id must be the file name without `.md`, so that one file is one model.
fn check_file_name(entry: &Entry) -> Option<Fault> {
    let stem = entry.file.file_stem().map(|stem| stem.to_string_lossy());
    if stem.as_deref() == Some(entry.persona.id.as_str()) {
        return None;
    }
    let detail = format!(
        "field `id`: is \"{}\" but the file is named {}; they must match",
        entry.persona.id,
        entry.file.file_name().map(|name| name.to_string_lossy()).unwrap_or_default(),
    );
    Some(Fault::new(&entry.file, detail))
}

/// A fault on every file whose id an earlier file already defines.
fn find_duplicates(entries: &[Entry]) -> Vec<Fault> {
    let mut first_file: BTreeMap<&str, &Path> = BTreeMap::new();
    let mut faults = Vec::new();

    for entry in entries {
        let id = entry.persona.id.as_str();
        match first_file.get(id) {
            Some(earlier) => faults.push(Fault::new(
                &entry.file,
                format!("field `id`: \"{id}\" is already defined by {}", earlier.display()),
            )),
            None => {
                first_file.insert(id, &entry.file);
            }
        }
    }
    faults
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A persona file whose header has `id` and a valid rest.
    pub fn persona_file(id: &str) -> String {
        format!(
            "+++\nid = \"{id}\"\nname = \"N {id}\"\ndescription = \"About {id}.\"\n\
             upstream_model = \"novita/model-{id}\"\ncreated = 2026-01-15\n+++\nYou are {id}.\n"
        )
    }

    /// A fresh folder under the system temp dir holding `files`.
    pub fn fixture(label: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("personas-unit-{label}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|error| panic!("{error}"));
        for (name, text) in files {
            fs::write(dir.join(name), text).unwrap_or_else(|error| panic!("{error}"));
        }
        dir
    }

    fn faults_of(dir: &Path) -> Vec<String> {
        let faults = read_catalog(dir).faults;
        let _ = fs::remove_dir_all(dir);
        faults.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_good_folder_gives_sorted_entries_with_the_shared_prompt() {
        let dir = fixture(
            "good",
            &[
                (SHARED_FILE, "Shared.\n"),
                ("plato.md", &persona_file("plato")),
                ("aristotle.md", &persona_file("aristotle")),
                ("notes.txt", "not a persona"),
                ("_draft.md", "not a persona either"),
            ],
        );
        let catalog = read_catalog(&dir);
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(catalog.faults, []);
        let entries = catalog.entries;

        let ids: Vec<&str> = entries.iter().map(|entry| entry.persona.id.as_str()).collect();
        assert_eq!(ids, ["aristotle", "plato"]);
        let prompt = entries.first().map(|entry| entry.persona.system_prompt.as_str());
        assert_eq!(prompt, Some("Shared.\n\nYou are aristotle."));
    }

    #[test]
    fn an_id_must_match_its_file_name() {
        let dir = fixture("mismatch", &[(SHARED_FILE, "S"), ("plato.md", &persona_file("platon"))]);
        let faults = faults_of(&dir);
        assert_eq!(faults.len(), 1);
        assert!(
            faults[0].ends_with(
                "plato.md: field `id`: is \"platon\" but the file is named \
                                     plato.md; they must match"
            ),
            "{faults:?}"
        );
    }

    #[test]
    fn a_duplicate_id_names_both_files() {
        let entry = |file: &str| Entry {
            file: PathBuf::from(file),
            persona: crate::source::parse_persona(&persona_file("plato"), "S")
                .unwrap_or_else(|fault| panic!("{fault}")),
        };
        let faults = find_duplicates(&[entry("p/plato.md"), entry("p/plato2.md")]);
        let text: Vec<String> = faults.iter().map(ToString::to_string).collect();
        assert_eq!(text, ["p/plato2.md: field `id`: \"plato\" is already defined by p/plato.md"]);
    }

    #[test]
    fn a_missing_shared_file_is_a_fault() {
        let dir = fixture("noshared", &[("plato.md", &persona_file("plato"))]);
        let faults = faults_of(&dir);
        assert_eq!(faults.len(), 1);
        assert!(faults[0].contains("_shared.md: is missing"), "{faults:?}");
    }

    #[test]
    fn every_faulty_file_is_reported() {
        let dir = fixture(
            "many",
            &[
                (SHARED_FILE, "S"),
                ("a.md", "no header"),
                ("b.md", &persona_file("b").replace("+++\nYou", "You")),
                ("c.md", &persona_file("c")),
                ("d.md", &persona_file("d").replace("created", "colour = 1\ncreated")),
            ],
        );
        let catalog = read_catalog(&dir);
        let ids: Vec<&str> =
            catalog.entries.iter().map(|entry| entry.persona.id.as_str()).collect();
        assert_eq!(ids, ["c"]);
        let faults = faults_of(&dir);
        assert_eq!(faults.len(), 3, "{faults:?}");
        assert!(faults[0].contains("a.md: the first line must be `+++`"));
        assert!(faults[1].contains("b.md: the header opened by `+++`"));
        assert!(faults[2].contains("d.md: field `colour`: unknown header key"));
    }

    #[test]
    fn an_empty_folder_is_a_fault() {
        let dir = fixture("empty", &[(SHARED_FILE, "S")]);
        assert_eq!(faults_of(&dir).len(), 1);
    }
}
