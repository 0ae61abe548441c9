//! Shared by the tests that drive Python peers.

#![allow(dead_code)] // each test binary uses a different part

use std::path::{Path, PathBuf};
use std::process::Command;

pub(crate) mod kms;

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

/// A running `keyward serve`, killed on drop.
#[allow(dead_code)]
pub(crate) struct Server {
    pub(crate) child: std::process::Child,
    /// The `export` lines it printed, as (name, value).
    pub(crate) env: Vec<(String, String)>,
    /// Every line it printed at start.
    pub(crate) banner: Vec<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[allow(dead_code)]
impl Server {
    /// The port it listens on.
    pub(crate) fn port(&self) -> u16 {
        let url = &self
            .env
            .iter()
            .find(|(k, _)| k == "AWS_ENDPOINT_URL_KMS")
            .unwrap()
            .1;
        url.rsplit(':').next().unwrap().parse().unwrap()
    }
}

/// Starts `keyward serve` on a free port and reads the `export` lines it prints.
#[allow(dead_code)]
pub(crate) fn start(data_dir: &Path) -> Server {
    start_with(data_dir, &[])
}

/// As [`start`], with more flags.
#[allow(dead_code)]
pub(crate) fn start_with(data_dir: &Path, args: &[&str]) -> Server {
    start_with_env(data_dir, args, &[])
}

/// As [`start_with`], with more environment variables.
pub(crate) fn start_with_env(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
    start_at(data_dir, "127.0.0.1:0", args, env)
}

/// As [`start_with_env`], listening at `listen` (e.g. a port it had before).
pub(crate) fn start_at(
    data_dir: &Path,
    listen: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Server {
    start_logging(data_dir, listen, args, env, None)
}

/// As [`start_at`], with the server's log (at debug level) going to `log`.
pub(crate) fn start_logging(
    data_dir: &Path,
    listen: &str,
    args: &[&str],
    env: &[(&str, &str)],
    log: Option<&Path>,
) -> Server {
    use std::io::{BufRead as _, BufReader};
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen", listen])
        .args(args)
        .envs(env.iter().copied())
        .env("KEYWARD_LOG", if log.is_some() { "debug" } else { "warn" })
        .stdout(Stdio::piped())
        .stderr(match log {
            Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
            None => Stdio::null(),
        })
        .spawn()
        .unwrap();
    let (mut env, mut banner) = (Vec::new(), Vec::new());
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        banner.push(line.clone());
        if let Some((k, v)) = line.strip_prefix("export ").and_then(|l| l.split_once('=')) {
            env.push((k.to_owned(), v.to_owned()));
        }
        if line.starts_with("export AWS_SECRET_ACCESS_KEY=")
            || line.starts_with(". ")
            || line.starts_with("# administrator credentials")
        {
            break;
        }
    }
    Server { child, env, banner }
}
