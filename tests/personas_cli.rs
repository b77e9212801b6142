//! Runs the built `personas` tool on fixture folders: a good one passes `check`, a broken one
//! fails with a message naming each faulty file and field.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};

const SHARED: &str = "Stay in character. Answer in the user's language.\n";

/// A persona file for `id`, with `extra` added to the `[defaults]` table.
fn persona_file(id: &str, name: &str, extra: &str) -> String {
    format!(
        "+++\r\nid = \"{id}\"\r\nname = \"{name}\"\r\ndescription = \"The {name} persona.\"\r\n\
         upstream_model = \"novita/meta-llama/llama-3.3-70b-instruct\"\r\ncreated = 2026-01-15\r\n\
         \r\n[defaults]\r\ntemperature = 0.8\r\n{extra}+++\r\n\r\nYou are {name}.\r\n"
    )
}

/// A fresh folder under the system temp dir, unique to this process and `label`.
fn fixture(label: &str, files: &[(&str, String)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("personas-cli-{label}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|error| panic!("{}: {error}", dir.display()));
    for (name, text) in files {
        fs::write(dir.join(name), text).unwrap_or_else(|error| panic!("{name}: {error}"));
    }
    dir
}

fn run(arguments: &[&str], dir: &PathBuf) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_personas"))
        .args(arguments)
        .arg("--dir")
        .arg(dir)
        .output()
        .unwrap_or_else(|error| panic!("cannot run personas: {error}"));
    let _ = fs::remove_dir_all(dir);
    output
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_good_folder_passes_check() {
    let dir = fixture(
        "good",
        &[
            ("_shared.md", SHARED.to_owned()),
            ("socrates.md", persona_file("socrates", "Socrates", "max_tokens = 1024\r\n")),
            ("ada-lovelace.md", persona_file("ada-lovelace", "Ada Lovelace", "")),
            ("README.txt", "not read".to_owned()),
        ],
    );
    let output = run(&["check"], &dir);
    let stdout = text(&output.stdout);

    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "ok  ada-lovelace  Ada Lovelace  novita/meta-llama/llama-3.3-70b-instruct",
            "ok  socrates  Socrates  novita/meta-llama/llama-3.3-70b-instruct",
        ]
    );
}

#[test]
fn a_broken_folder_fails_check_naming_file_and_field() {
    let dir = fixture(
        "broken",
        &[
            ("_shared.md", SHARED.to_owned()),
            ("socrates.md", persona_file("socrates", "Socrates", "").replace("0.8", "3")),
            (
                "plato.md",
                persona_file("plato", "Plato", "colour = 1\r\n").replace("[defaults]", ""),
            ),
            ("good.md", persona_file("good", "Good", "")),
        ],
    );
    let output = run(&["check"], &dir);
    let stderr = text(&output.stderr);

    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let expected = [
        "plato.md: field `colour`: unknown header key",
        "socrates.md: field `defaults.temperature`: must be a number from 0 to 2",
        "check failed: 2 faults",
    ];
    for message in expected {
        assert!(stderr.contains(message), "missing {message:?} in:\n{stderr}");
    }
    assert!(text(&output.stdout).contains("ok  good  Good"));
}

#[test]
fn a_folder_without_shared_instructions_fails_check() {
    let dir = fixture("noshared", &[("socrates.md", persona_file("socrates", "Socrates", ""))]);
    let output = run(&["check"], &dir);

    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("_shared.md: is missing"));
}

#[test]
fn sync_stops_before_wrangler_when_check_fails() {
    let dir = fixture("nosync", &[("_shared.md", SHARED.to_owned()), ("x.md", String::new())]);
    let output = run(&["sync", "--local"], &dir);
    let stderr = text(&output.stderr);

    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("x.md: the first line must be `+++`"), "{stderr}");
    assert!(stderr.contains("nothing was synced"), "{stderr}");
}

#[test]
fn a_bad_command_line_shows_usage() {
    let dir = fixture("usage", &[]);
    let output = run(&["sync"], &dir);

    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("usage: personas"));
}
