//! The command line of the `personas` tool, read by hand: a command, then its options.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::wrangler::Target;

/// The folder read when `--dir` is not given.
pub const DEFAULT_DIR: &str = "personas";

/// What the tool was asked to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Help,
    Check { dir: PathBuf },
    Sync { dir: PathBuf, target: Target },
}

/// The options seen so far, before they are checked against the command.
#[derive(Default)]
struct Options {
    command: Option<String>,
    dir: Option<PathBuf>,
    local: bool,
    remote: bool,
    persist_to: Option<PathBuf>,
}

/// Reads the arguments after the program name.
///
/// # Errors
/// What is wrong with the command line, in words.
pub fn parse_arguments(arguments: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    let mut options = Options::default();
    let mut arguments = arguments.into_iter();

    while let Some(argument) = arguments.next() {
        match argument.to_str() {
            Some("-h" | "--help" | "help") => return Ok(Command::Help),
            Some("--dir") => options.dir = Some(take_value(arguments.next(), "--dir")?),
            Some("--persist-to") => {
                options.persist_to = Some(take_value(arguments.next(), "--persist-to")?);
            }
            Some("--local") => options.local = true,
            Some("--remote") => options.remote = true,
            Some(name @ ("check" | "sync")) if options.command.is_none() => {
                options.command = Some(name.to_owned());
            }
            _ => return Err(format!("unexpected argument `{}`", argument.to_string_lossy())),
        }
    }
    command_from_options(options)
}

fn take_value(value: Option<OsString>, option: &str) -> Result<PathBuf, String> {
    match value {
        Some(value) if !value.is_empty() => Ok(PathBuf::from(value)),
        _ => Err(format!("`{option}` needs a folder after it")),
    }
}

fn command_from_options(options: Options) -> Result<Command, String> {
    let dir = options.dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DIR));
    match options.command.as_deref() {
        Some("check") if options.local || options.remote || options.persist_to.is_some() => {
            Err("`check` takes only `--dir`".to_owned())
        }
        Some("check") => Ok(Command::Check { dir }),
        Some("sync") => {
            let target = match (options.local, options.remote, options.persist_to) {
                (true, false, persist_to) => Target::Local { persist_to },
                (false, true, None) => Target::Remote,
                (false, true, Some(_)) => {
                    return Err("`--persist-to` applies to `--local` only".to_owned());
                }
                _ => return Err("`sync` needs exactly one of `--local` and `--remote`".to_owned()),
            };
            Ok(Command::Sync { dir, target })
        }
        _ => Err("no command given: use `check` or `sync`".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Command, String> {
        parse_arguments(line.split_whitespace().map(OsString::from))
    }

    #[test]
    fn commands_and_options_are_read() {
        let personas = PathBuf::from(DEFAULT_DIR);
        let cases = [
            ("check", Command::Check { dir: personas.clone() }),
            ("check --dir /tmp/p", Command::Check { dir: "/tmp/p".into() }),
            ("--dir x check", Command::Check { dir: "x".into() }),
            ("sync --remote", Command::Sync { dir: personas.clone(), target: Target::Remote }),
            (
                "sync --local",
                Command::Sync { dir: personas.clone(), target: Target::Local { persist_to: None } },
            ),
            (
                "sync --local --persist-to /tmp/kv --dir d",
                Command::Sync {
                    dir: "d".into(),
                    target: Target::Local { persist_to: Some("/tmp/kv".into()) },
                },
            ),
            ("check --help", Command::Help),
            ("-h", Command::Help),
        ];
        for (line, expected) in cases {
            assert_eq!(parse(line), Ok(expected), "{line}");
        }
    }

    #[test]
    fn bad_command_lines_are_refused() {
        let lines = [
            "",
            "push",
            "check check",
            "check --local",
            "check --dir",
            "sync",
            "sync --local --remote",
            "sync --remote --persist-to /tmp/kv",
            "sync --local --verbose",
        ];
        for line in lines {
            assert!(parse(line).is_err(), "{line}");
        }
    }
}
