//! Inputs, outputs that appear only when complete, key files, and the CLI's errors.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, IsTerminal as _, Read, Write};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use keyward_envelope::WrappingKey;
use zeroize::Zeroizing;

/// Inputs at least this large get a progress bar when standard error is a terminal.
const PROGRESS_THRESHOLD: u64 = 64 * 1024 * 1024;

/// A failed command: what to print and the exit code.
#[derive(Debug)]
pub(crate) struct CliError {
    code: u8,
    message: String,
}

impl CliError {
    /// A bad flag or setting: exit 64.
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self {
            code: crate::EXIT_USAGE,
            message: message.into(),
        }
    }

    /// The command ran and failed: exit 1.
    pub(crate) fn failed(message: impl Into<String>) -> Self {
        Self {
            code: 1,
            message: message.into(),
        }
    }

    /// The command refused or failed in a way with its own exit code.
    pub(crate) fn with_code(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// Exit with `code` and no message (the command already said what it had to).
    pub(crate) fn exit(code: u8) -> Self {
        Self {
            code,
            message: String::new(),
        }
    }

    pub(crate) fn exit_code(&self) -> u8 {
        self.code
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

fn is_stdio(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Opens `path` (or standard input for `-`), with a progress bar for large files when a
/// person is watching.
pub(crate) fn open_input(path: &Path) -> Result<Box<dyn Read + Send>, CliError> {
    if is_stdio(path) {
        return Ok(Box::new(io::stdin()));
    }
    let file = File::open(path)
        .map_err(|e| CliError::failed(format!("cannot open --in {}: {e}", path.display())))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len >= PROGRESS_THRESHOLD && io::stderr().is_terminal() {
        let style = indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        let bar = indicatif::ProgressBar::new(len).with_style(style);
        return Ok(Box::new(bar.wrap_read(file)));
    }
    Ok(Box::new(file))
}

/// Where output goes. A file output is written to a temporary file beside it, and renamed
/// into place by [`Output::commit`] only after the whole job succeeded; dropped without
/// commit, the temporary file is removed.
pub(crate) enum Output {
    Stdout(io::StdoutLock<'static>),
    File {
        tmp: tempfile::NamedTempFile,
        dest: PathBuf,
    },
}

impl Output {
    /// Prepares the output for `path` (`-` for standard output). `input` is the input
    /// path, which the output must not overwrite; `binary` refuses a terminal.
    pub(crate) fn create(path: &Path, input: &Path, binary: bool) -> Result<Self, CliError> {
        if is_stdio(path) {
            let stdout = io::stdout();
            if binary && stdout.is_terminal() {
                return Err(CliError::usage(
                    "refusing to write binary output to a terminal: use --out FILE or redirect",
                ));
            }
            return Ok(Self::Stdout(stdout.lock()));
        }
        if !is_stdio(input) && same_file(path, input) {
            return Err(CliError::usage("--out names the same file as --in"));
        }
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(".keyward-")
            .suffix(".partial")
            .tempfile_in(dir)
            .map_err(|e| {
                CliError::failed(format!("cannot create --out {}: {e}", path.display()))
            })?;
        Ok(Self::File {
            tmp,
            dest: path.to_owned(),
        })
    }

    pub(crate) fn writer(&mut self) -> &mut dyn Write {
        match self {
            Self::Stdout(s) => s,
            Self::File { tmp, .. } => tmp.as_file_mut(),
        }
    }

    /// Makes the output durable and visible: sync, rename over the destination, sync the
    /// directory.
    pub(crate) fn commit(self) -> Result<(), CliError> {
        match self {
            Self::Stdout(mut s) => s
                .flush()
                .map_err(|e| CliError::failed(format!("writing output: {e}"))),
            Self::File { tmp, dest } => {
                let fail = |e: io::Error| {
                    CliError::failed(format!("writing --out {}: {e}", dest.display()))
                };
                tmp.as_file().sync_all().map_err(fail)?;
                tmp.persist(&dest).map_err(|e| fail(e.error))?;
                if let Some(dir) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
                    File::open(dir).and_then(|d| d.sync_all()).map_err(fail)?;
                }
                Ok(())
            }
        }
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Reads a raw 256-bit wrapping key file, warning if others may read it.
pub(crate) fn read_key_file(path: &Path) -> Result<WrappingKey, CliError> {
    let bad = |why: String| CliError::usage(format!("--key-file {}: {why}", path.display()));
    let file = File::open(path).map_err(|e| bad(e.to_string()))?;
    let meta = file.metadata().map_err(|e| bad(e.to_string()))?;
    if meta.len() != 32 {
        return Err(bad(format!(
            "a key file holds exactly 32 bytes, this one {}",
            meta.len()
        )));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        eprintln!(
            "keyward: warning: key file {} is readable by other users (chmod 600 it)",
            path.display()
        );
    }
    let mut key = Zeroizing::new([0u8; 32]);
    (&file)
        .read_exact(&mut key[..])
        .map_err(|e| bad(e.to_string()))?;
    Ok(WrappingKey::from_bytes(*key))
}

/// Writes a fresh key to a new file created with mode 0600.
pub(crate) fn write_key_file(path: &Path, key: &WrappingKey) -> Result<(), CliError> {
    let fail =
        |e: io::Error| CliError::failed(format!("cannot write --out {}: {e}", path.display()));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(fail)?;
    file.write_all(key.expose_secret()).map_err(fail)?;
    file.sync_all().map_err(fail)
}

/// Writes `bytes` to `path` with `mode` so that readers see the old file or the whole new
/// one: a temporary file beside it, synced, renamed over it, the directory synced.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CliError> {
    let fail = |e: io::Error| CliError::failed(format!("writing {}: {e}", path.display()));
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".keyward-")
        .suffix(".partial")
        .permissions(fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .map_err(fail)?;
    tmp.write_all(bytes).map_err(fail)?;
    tmp.as_file().sync_all().map_err(fail)?;
    tmp.persist(path).map_err(|e| fail(e.error))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(fail)
}
