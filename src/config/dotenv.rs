//! The `.env` file (SPEC §3, §8): read from the working directory only — never from a
//! parent directory, as dotenvy's own `dotenv()` would — and never into the process
//! environment. Its variables fill in what the real environment leaves unset, through
//! the lookup that [`load`](super::load) hands to the settings table. A `.env` that
//! cannot be read or parsed is a configuration error (exit 7) naming its line, never
//! its contents (a value may be a secret).

use std::collections::HashMap;
use std::path::Path;

use crate::error::{Error, Result};

/// The file's name, looked up in the working directory.
pub const DOTENV_FILE: &str = ".env";

/// The variables of `dir/.env`; none when there is no such file.
pub fn read(dir: &Path) -> Result<HashMap<String, String>> {
    let path = dir.join(DOTENV_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => {
            return Err(Error::config(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    };
    parse(&text).map_err(|e| Error::config(format!("{} {e}", path.display())))
}

/// Parses the text of a `.env` file. The first definition of a name wins, as with
/// dotenvy's loader.
pub fn parse(text: &str) -> std::result::Result<HashMap<String, String>, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut vars = HashMap::new();
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        match item {
            Ok((name, value)) => {
                vars.entry(name).or_insert(value);
            }
            Err(dotenvy::Error::LineParse(line, index)) => {
                return Err(describe_bad_line(text, &line, index));
            }
            Err(e) => return Err(format!("cannot be parsed: {}", redact_error(&e))),
        }
    }
    Ok(vars)
}

/// "line N (NAME) cannot be parsed at character C": where, never what.
fn describe_bad_line(text: &str, line: &str, index: usize) -> String {
    let start = line.trim_end_matches(['\n', '\r']);
    let number = text
        .find(start)
        .map_or(0, |at| text[..at].matches('\n').count() + 1);
    // The name comes from the physical line: dotenvy may hand over only a part of it.
    let physical = text.lines().nth(number.saturating_sub(1)).unwrap_or(start);
    let name = physical
        .trim_start()
        .trim_start_matches("export ")
        .split_once('=')
        .map(|(name, _)| name.trim())
        .filter(|name| {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        })
        .map(|name| format!(" ({name})"))
        .unwrap_or_default();
    let at = index.min(start.chars().count()) + 1;
    if number == 0 {
        format!("cannot be parsed: a line{name} is malformed at character {at}")
    } else {
        format!("line {number}{name} cannot be parsed (at character {at}); expected NAME=value")
    }
}

/// dotenvy's other errors (I/O, substitution) carry no file contents, but keep to
/// their kind anyway.
fn redact_error(e: &dotenvy::Error) -> String {
    match e {
        dotenvy::Error::Io(io) => io.kind().to_string(),
        dotenvy::Error::EnvVar(_) => "a variable reference cannot be resolved".into(),
        _ => "malformed".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values_are_read_and_the_first_definition_wins() {
        let vars = parse("# comment\nA=1\nexport B=\"two words\"\nA=3\n\nC='x#y'\n").unwrap();
        assert_eq!(vars["A"], "1");
        assert_eq!(vars["B"], "two words");
        assert_eq!(vars["C"], "x#y");
    }

    #[test]
    fn a_bad_line_is_named_by_number_without_its_value() {
        let err = parse("A=1\n\nSECRET_KEY=abc def hunter2\n").unwrap_err();
        assert!(
            err.contains("line 3") && err.contains("SECRET_KEY"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
        let err = parse("A=1\nB=\"unterminated hunter2\n").unwrap_err();
        assert!(err.contains("line 2") && !err.contains("hunter2"), "{err}");
        let err = parse("just words\n").unwrap_err();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn a_missing_file_is_no_variables() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path()).unwrap().is_empty());
    }
}
