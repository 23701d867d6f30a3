//! The library's error type.
//!
//! Errors carry what a user needs to act: the file, line and field for bad input (exit code 2),
//! the path for filesystem failures, and the feature to enable for a backend that was compiled
//! out. The binary maps [`Error::exit_code`] to the process exit status.

use std::path::{Path, PathBuf};

/// Everything that can go wrong in recbench's library code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input: a scenario, catalog or results file, or a command-line value.
    #[error("{}", format_input(path, *line, *column, field, message))]
    Input {
        /// The file that holds the bad value (or `<command line>`).
        path: PathBuf,
        /// 1-based line of the bad value, when known.
        line: Option<usize>,
        /// 1-based column, when known (JSON parse errors).
        column: Option<usize>,
        /// Dotted name of the offending field, e.g. `workload.batch`, or its JSON path,
        /// e.g. `runs[3].latency.p99_ms`.
        field: String,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// A filesystem operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A backend or device that this build does not include.
    #[error("{what} is not enabled in this build; rebuild with --features {feature}")]
    NotEnabled { what: String, feature: String },
    /// A model file is missing or does not match its checksum.
    #[error("{0}")]
    Model(String),
    /// A backend failed while loading or running the model.
    #[error("{backend} backend: {message}")]
    Backend { backend: String, message: String },
    /// A measurement could not be made or is not trustworthy.
    #[error("{0}")]
    Measure(String),
}

fn format_input(
    path: &Path,
    line: Option<usize>,
    column: Option<usize>,
    field: &str,
    message: &str,
) -> String {
    let mut s = path.display().to_string();
    if let Some(line) = line {
        s.push_str(&format!(":{line}"));
        if let Some(column) = column {
            s.push_str(&format!(":{column}"));
        }
    }
    if !field.is_empty() {
        s.push_str(&format!(": field `{field}`"));
    }
    s.push_str(": ");
    s.push_str(message);
    s
}

impl Error {
    /// Bad-input error with a known line.
    pub fn input(
        path: impl Into<PathBuf>,
        line: Option<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::Input {
            path: path.into(),
            line,
            column: None,
            field: field.into(),
            message: message.into(),
        }
    }

    /// Bad-input error at a line and column (JSON).
    pub fn input_at(
        path: impl Into<PathBuf>,
        line: usize,
        column: usize,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::Input {
            path: path.into(),
            line: Some(line),
            column: Some(column),
            field: field.into(),
            message: message.into(),
        }
    }

    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Backend failure.
    pub fn backend(backend: &str, message: impl std::fmt::Display) -> Self {
        Error::Backend {
            backend: backend.to_string(),
            message: message.to_string(),
        }
    }

    /// Process exit code for this error: 2 for bad input or usage, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Input { .. } | Error::NotEnabled { .. } => 2,
            _ => 1,
        }
    }
}

/// Result alias for the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// 1-based line number of a byte offset in `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The dotted `table.key` name of the value at byte `offset`, found from the text: the key on
/// that line and the nearest `[table]` header above it.
pub fn field_at(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next().unwrap_or("");
    let key = line.split('=').next().unwrap_or("").trim();
    let table = text[..start + line.len()]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && l.ends_with(']'))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    let key = if line.contains('=') && !key.starts_with('[') {
        key
    } else {
        ""
    };
    match (table, key) {
        (Some(t), "") => t,
        (Some(t), k) => format!("{t}.{k}"),
        (None, k) => k.to_string(),
    }
}

/// The JSON key on line `line` (1-based) of `text`, if there is one, for error messages.
pub fn json_key_on_line(text: &str, line: usize) -> Option<String> {
    let l = text.lines().nth(line.checked_sub(1)?)?;
    let start = l.find('"')? + 1;
    let end = start + l[start..].find('"')?;
    l[end + 1..]
        .trim_start()
        .starts_with(':')
        .then(|| l[start..end].to_string())
}
