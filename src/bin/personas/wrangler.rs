//! The KV steps of a sync, run through the project's own wrangler
//! (`node_modules/.bin/wrangler`) from the repo root.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where wrangler is installed by `npm install`, relative to the repo root.
const WRANGLER: &str = "node_modules/.bin/wrangler";

/// The KV binding in wrangler.toml that holds the personas.
const BINDING: &str = "PERSONAS";

/// Which copy of the namespace a sync writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Wrangler's local storage, optionally under a chosen folder.
    Local { persist_to: Option<PathBuf> },
    /// The namespace on Cloudflare.
    Remote,
}

impl Target {
    /// How the sync summary names the target.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Local { .. } => "local",
            Self::Remote => "remote",
        }
    }
}

/// A wrangler found in the current folder, bound to one target.
pub struct Wrangler {
    program: PathBuf,
    target: Target,
}

impl Wrangler {
    /// Finds `node_modules/.bin/wrangler` under the current folder, which must be the repo root.
    ///
    /// # Errors
    /// A message telling the user to run `npm install` when wrangler is not there.
    pub fn find(target: Target) -> Result<Self, String> {
        let program = PathBuf::from(WRANGLER);
        if !program.is_file() {
            return Err(format!(
                "{WRANGLER} not found: run `npm install` in the repo root, and run this tool from \
                 there"
            ));
        }
        Ok(Self { program, target })
    }

    /// Writes every pair of the bulk file at `file`.
    ///
    /// # Errors
    /// Wrangler's own output when it fails.
    pub fn bulk_put(&self, file: &Path) -> Result<(), String> {
        self.run(&["kv", "bulk", "put"], Some(file), &[]).map(drop)
    }

    /// Deletes the keys listed (a JSON array of names) in `file`, without asking.
    ///
    /// # Errors
    /// Wrangler's own output when it fails.
    pub fn bulk_delete(&self, file: &Path) -> Result<(), String> {
        self.run(&["kv", "bulk", "delete"], Some(file), &["--force"]).map(drop)
    }

    /// The JSON text of every key that starts with `prefix`.
    ///
    /// # Errors
    /// Wrangler's own output when it fails.
    pub fn list_keys(&self, prefix: &str) -> Result<String, String> {
        self.run(&["kv", "key", "list"], None, &["--prefix", prefix])
    }

    /// Runs one wrangler command against the binding and target; returns its standard output.
    fn run(&self, command: &[&str], file: Option<&Path>, extra: &[&str]) -> Result<String, String> {
        let mut arguments: Vec<OsString> = command.iter().map(OsString::from).collect();
        arguments.extend(file.map(OsString::from));
        arguments.extend(self.namespace_arguments());
        arguments.extend(extra.iter().map(OsString::from));

        let output = Command::new(&self.program)
            .args(&arguments)
            .env("WRANGLER_SEND_METRICS", "false")
            .stdin(Stdio::null())
            .output()
            .map_err(|error| format!("cannot run {WRANGLER}: {error}"))?;

        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            return Ok(stdout);
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(format!(
            "`wrangler {}` failed ({}):\n{}\n{}",
            command.join(" "),
            output.status,
            stderr.trim(),
            stdout.trim()
        ))
    }

    /// `--binding PERSONAS` and the target's flags.
    fn namespace_arguments(&self) -> Vec<OsString> {
        let mut arguments = vec![OsString::from("--binding"), OsString::from(BINDING)];
        match &self.target {
            Target::Local { persist_to } => {
                arguments.push("--local".into());
                if let Some(folder) = persist_to {
                    arguments.push("--persist-to".into());
                    arguments.push(folder.into());
                }
            }
            Target::Remote => arguments.push("--remote".into()),
        }
        arguments
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arguments(target: Target) -> Vec<String> {
        let wrangler = Wrangler { program: PathBuf::from(WRANGLER), target };
        let arguments = wrangler.namespace_arguments();
        arguments.iter().map(|argument| argument.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn each_target_has_its_flags() {
        assert_eq!(arguments(Target::Remote), ["--binding", "PERSONAS", "--remote"]);
        assert_eq!(
            arguments(Target::Local { persist_to: None }),
            ["--binding", "PERSONAS", "--local"]
        );
        let persist_to = Some(PathBuf::from("/tmp/kv"));
        assert_eq!(
            arguments(Target::Local { persist_to }),
            ["--binding", "PERSONAS", "--local", "--persist-to", "/tmp/kv"]
        );
    }
}
