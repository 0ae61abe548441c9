//! Shared by the tests that drive Python peers.

use std::path::{Path, PathBuf};
use std::process::Command;

pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_default()
}

/// The pinned venv's Python (tests/interop/setup-venv), if it can `import` all of
/// `modules`. Without it the test prints that it skipped, except under CI, where a
/// missing peer is a failure.
pub(crate) fn python(modules: &str, test: &str) -> Option<PathBuf> {
    let python = std::env::var_os("KEYWARD_INTEROP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/interop-venv/bin/python"));
    let import = format!("import {modules}");
    if Command::new(&python)
        .args(["-c", &import])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Some(python);
    }
    let why = format!("no Python with {modules} at {}", python.display());
    assert!(
        std::env::var_os("CI").is_none(),
        "{why}: .ci/run must run tests/interop/setup-venv first"
    );
    eprintln!("SKIPPED {test}: {why} (run tests/interop/setup-venv)");
    None
}
