//! A throwaway SoftHSM2 token: its own configuration and token directory in a temporary
//! directory, one token labelled `keyward` with user PIN `1234` (in a 0600 PIN file).
//! Processes that use it need `SOFTHSM2_CONF` set to [`SoftHsm::conf`].

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where Debian puts the module.
const MODULES: [&str; 2] = [
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
];

/// A SoftHSM2 token in a temporary directory, removed on drop.
#[derive(Debug)]
pub struct SoftHsm {
    dir: tempfile::TempDir,
    module: PathBuf,
}

impl SoftHsm {
    /// Sets up the token. Without SoftHSM2 prints `SKIPPED <test>: ...` and returns
    /// `None`, except under `CI`, where it panics: CI must run these tests.
    pub fn start(test: &str) -> Option<Self> {
        let module = MODULES.iter().map(PathBuf::from).find(|p| p.exists());
        let util = Command::new("softhsm2-util").arg("--version").output();
        let (Some(module), Ok(_)) = (module, util) else {
            let why = "SoftHSM2 not found (Debian package softhsm2)";
            assert!(
                std::env::var_os("CI").is_none(),
                "{why}: .ci/run installs it"
            );
            eprintln!("SKIPPED {test}: {why}");
            return None;
        };
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temporary directory: {e}"));
        let tokens = dir.path().join("tokens");
        fs::create_dir(&tokens).unwrap_or_else(|e| panic!("token directory: {e}"));
        fs::write(
            dir.path().join("softhsm2.conf"),
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap_or_else(|e| panic!("configuration: {e}"));
        let pin = dir.path().join("pin");
        fs::write(&pin, "1234\n").unwrap_or_else(|e| panic!("PIN file: {e}"));
        fs::set_permissions(&pin, fs::Permissions::from_mode(0o600))
            .unwrap_or_else(|e| panic!("PIN file mode: {e}"));
        let hsm = Self { dir, module };
        let out = hsm
            .util()
            .args(["--init-token", "--free", "--label", "keyward"])
            .args(["--pin", "1234", "--so-pin", "12345678"])
            .output()
            .unwrap_or_else(|e| panic!("softhsm2-util: {e}"));
        assert!(
            out.status.success(),
            "softhsm2-util --init-token: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(hsm)
    }

    fn util(&self) -> Command {
        let mut c = Command::new("softhsm2-util");
        c.env("SOFTHSM2_CONF", self.conf());
        c
    }

    /// The configuration file: `SOFTHSM2_CONF`.
    pub fn conf(&self) -> PathBuf {
        self.dir.path().join("softhsm2.conf")
    }

    /// The PKCS#11 module.
    pub fn module(&self) -> &Path {
        &self.module
    }

    /// A file holding the user PIN.
    pub fn pin_file(&self) -> PathBuf {
        self.dir.path().join("pin")
    }

    /// The token's label.
    pub fn token(&self) -> &'static str {
        "keyward"
    }

    /// Removes the token, as if the HSM were unplugged for good.
    pub fn delete_token(&self) {
        let out = self
            .util()
            .args(["--delete-token", "--token", self.token()])
            .output()
            .unwrap_or_else(|e| panic!("softhsm2-util: {e}"));
        assert!(
            out.status.success(),
            "softhsm2-util --delete-token: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
