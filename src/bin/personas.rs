//! `personas`: checks the persona files in `personas/` and syncs them to the KV namespace bound
//! as `PERSONAS` in wrangler.toml. Run it from the repo root; `--help` lists the commands.

// A binary's root sits beside its folder, so each module names its file.
#[path = "personas/args.rs"]
mod args;
#[path = "personas/catalog.rs"]
mod catalog;
#[path = "personas/created.rs"]
mod created;
#[path = "personas/header.rs"]
mod header;
#[path = "personas/kv.rs"]
mod kv;
#[path = "personas/source.rs"]
mod source;
#[path = "personas/sync.rs"]
mod sync;
#[path = "personas/wrangler.rs"]
mod wrangler;

use std::path::Path;
use std::process::ExitCode;

use args::{parse_arguments, Command};
use catalog::{read_catalog, Entry, Fault};
use wrangler::Target;

const USAGE: &str = "\
usage: personas <command> [options]

commands:
  check                      parse and validate every persona file
  sync --local [--persist-to DIR]
                             check, then write the personas to local KV (wrangler's storage)
  sync --remote              check, then write the personas to the KV namespace on Cloudflare

options:
  --dir DIR                  the persona folder (default: personas)
  -h, --help                 show this help

Run from the repo root; sync uses node_modules/.bin/wrangler (`npm install`).";

/// Exit status for a fault in the personas or in a sync step.
const EXIT_FAULT: u8 = 1;
/// Exit status for a command line the tool does not understand.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    match parse_arguments(std::env::args_os().skip(1)) {
        Ok(Command::Help) => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(Command::Check { dir }) => run_check(&dir),
        Ok(Command::Sync { dir, target }) => run_sync(&dir, target),
        Err(message) => {
            eprintln!("personas: {message}\n\n{USAGE}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Prints one line per persona without fault, then every fault.
fn run_check(dir: &Path) -> ExitCode {
    let catalog = read_catalog(dir);
    for entry in &catalog.entries {
        println!("{}", check_line(entry));
    }
    if catalog.faults.is_empty() {
        ExitCode::SUCCESS
    } else {
        report_faults(&catalog.faults, "check failed")
    }
}

/// Checks, then syncs; prints the one-line summary.
fn run_sync(dir: &Path, target: Target) -> ExitCode {
    let catalog = read_catalog(dir);
    if !catalog.faults.is_empty() {
        return report_faults(&catalog.faults, "nothing was synced");
    }
    let personas: Vec<_> = catalog.entries.into_iter().map(|entry| entry.persona).collect();

    match sync::sync_personas(&personas, target) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("personas: sync failed: {message}");
            ExitCode::from(EXIT_FAULT)
        }
    }
}

/// `ok  <id>  <name>  <upstream model>`.
fn check_line(entry: &Entry) -> String {
    let persona = &entry.persona;
    format!("ok  {}  {}  {}", persona.id, persona.name, persona.upstream_model)
}

fn report_faults(faults: &[Fault], outcome: &str) -> ExitCode {
    for fault in faults {
        eprintln!("{fault}");
    }
    let noun = if faults.len() == 1 { "fault" } else { "faults" };
    eprintln!("{outcome}: {} {noun}", faults.len());
    ExitCode::from(EXIT_FAULT)
}
