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

/// The largest input file recbench reads (scenarios, catalogs, results): 256 MiB. A results
/// file keeps at most 10,000 samples a run, so a sweep of a thousand runs stays well below it.
pub const MAX_INPUT_BYTES: u64 = 256 << 20;

/// Reads a UTF-8 input file, refusing at once what is not a regular file (a device such as
/// `/dev/zero`, a folder, a pipe) or is larger than [`MAX_INPUT_BYTES`]. A file that cannot be
/// read, or holds non-UTF-8 bytes, is bad input (exit code 2), reported with the path (and the
/// line of the first bad byte).
pub fn read_text(path: &Path) -> Result<String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::input(path, None, "", format!("cannot read the file: {e}")))?;
    if !meta.is_file() {
        return Err(Error::input(
            path,
            None,
            "",
            "not a regular file (a folder, device or pipe); give a file",
        ));
    }
    if meta.len() > MAX_INPUT_BYTES {
        return Err(Error::input(
            path,
            None,
            "",
            format!(
                "{} bytes is more than recbench reads ({} MiB)",
                meta.len(),
                MAX_INPUT_BYTES >> 20
            ),
        ));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| Error::input(path, None, "", format!("cannot read the file: {e}")))?;
    text_of(path, bytes)
}

/// The bytes read from `path` as text: non-UTF-8 bytes are bad input naming the line of the
/// first bad byte.
pub fn text_of(path: &Path, bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        Error::input(path, Some(line), "", "file is not valid UTF-8 text")
    })
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, fsync, rename.
/// A reader (or a crash) sees either the old file or the new one, never a torn write.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Unique per call, not only per process: two threads writing the same file (tests, parity)
    // must not share one temporary file, or one's rename finds the other's file gone.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.tmp-{}-{seq}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
    f.sync_all().map_err(|e| Error::io(&tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    Ok(())
}

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
