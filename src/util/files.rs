//! Reading input files under the input rules (regular files, a size cap, UTF-8, errors that name
//! the file) and writing output files atomically.

use std::path::Path;

use crate::error::{Error, Result};

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
