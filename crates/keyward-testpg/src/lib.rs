//! Test support: a throwaway SoftHSM2 token ([`SoftHsm`]), and a throwaway PostgreSQL
//! cluster, made with `initdb` in a temporary
//! directory, listening on a free loopback port (and a unix socket in that directory),
//! stopped and removed on drop.
//!
//! ```no_run
//! let Some(pg) = keyward_testpg::PgCluster::start() else { return };
//! let url = pg.url(); // postgres://keyward:...@127.0.0.1:PORT/keyward
//! ```
//!
//! Without PostgreSQL's binaries [`PgCluster::start`] prints
//! `SKIPPED: PostgreSQL binaries not found` and returns `None`, except under `CI=true`,
//! where it panics: CI must run these tests. The binaries are found with
//! `pg_config --bindir`, else in `/usr/lib/postgresql/*/bin` (Debian keeps them off
//! `PATH`). `initdb` refuses to run as root: as root, the cluster's directory belongs to
//! the `postgres` system user and its commands run as that user (`runuser`).

#![warn(missing_docs)]

mod softhsm;
pub use softhsm::SoftHsm;

use std::fmt;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

/// A running cluster with a `keyward` role (password-authenticated over TCP) owning a
/// `keyward` database. Stopped (`pg_ctl stop -m immediate`) and deleted on drop.
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    password: String,
    /// As root: the uid and gid of `postgres`, whom the commands run as.
    owner: Option<(u32, u32)>,
}

impl fmt::Debug for PgCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgCluster")
            .field("dir", &self.dir.path())
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// Where `initdb`, `pg_ctl` and `psql` are, if anywhere.
pub fn bindir() -> Option<PathBuf> {
    let has_tools = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_tools(&dir) {
            return Some(dir);
        }
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, d)| has_tools(d))
        .collect();
    found.sort();
    found.pop().map(|(_, d)| d)
}

fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The effective uid, from /proc (no libc call needed).
fn euid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// The uid and gid of the `postgres` system user, from /etc/passwd.
fn postgres_user() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.starts_with("postgres:"))?;
    let mut fields = line.split(':').skip(2);
    Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
}

fn check(what: &str, out: std::io::Result<Output>) -> Output {
    match out {
        Ok(out) if out.status.success() => out,
        Ok(out) => panic!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("{what}: {e}"),
    }
}

impl PgCluster {
    /// Makes and starts a cluster; `None` (after saying so) when PostgreSQL is not
    /// installed and `CI` is not set. Panics on any other failure.
    pub fn start() -> Option<Self> {
        let Some(bin) = bindir() else {
            if is_ci() {
                panic!("PostgreSQL binaries not found, and CI is set: install postgresql");
            }
            println!("SKIPPED: PostgreSQL binaries not found");
            return None;
        };
        let owner = match euid() {
            Some(0) => Some(postgres_user().unwrap_or_else(|| {
                panic!("running as root, and there is no `postgres` user to run initdb as")
            })),
            _ => None,
        };
        let dir = tempfile::Builder::new()
            .prefix("keyward-pg-")
            .tempdir_in(std::env::temp_dir())
            .unwrap_or_else(|e| panic!("temporary directory: {e}"));
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .unwrap_or_else(|e| panic!("chown {}: {e}", dir.path().display()));
        }
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut cluster = Self {
            dir,
            bin,
            port: 0,
            password: format!("kw-pw-{:x}-{nanos:x}", std::process::id()),
            owner,
        };
        let data = cluster.data_dir();
        check(
            "initdb",
            cluster
                .command("initdb")
                .arg("-D")
                .arg(&data)
                .args([
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--no-locale",
                    "--no-sync",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                ])
                .output(),
        );
        // A port taken between our probe and the server's bind: try another.
        for attempt in 0.. {
            cluster.port = free_port();
            let conf = format!(
                "\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n\
                 fsync = off\nfull_page_writes = off\nmax_connections = 100\n",
                cluster.port,
                cluster.dir.path().display()
            );
            std::fs::write(
                data.join("postgresql.auto.conf"),
                format!("# written by keyward-testpg{conf}"),
            )
            .unwrap_or_else(|e| panic!("postgresql.auto.conf: {e}"));
            let started = cluster.pg_ctl(&["start", "-w", "-t", "60"]);
            if started.as_ref().is_ok_and(|o| o.status.success()) {
                break;
            }
            if attempt == 4 {
                check("pg_ctl start", started);
            }
        }
        cluster.psql(
            "postgres",
            &format!("CREATE ROLE keyward LOGIN PASSWORD '{}'", cluster.password),
        );
        cluster.psql("postgres", "CREATE DATABASE keyward OWNER keyward");
        Some(cluster)
    }

    /// The `keyward` database's URL, password included.
    pub fn url(&self) -> String {
        format!(
            "postgres://keyward:{}@127.0.0.1:{}/keyward",
            self.password, self.port
        )
    }

    /// The password in [`PgCluster::url`].
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The cluster's data directory (PGDATA).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs SQL as the superuser in `database` over the unix socket; returns what it
    /// printed (unaligned, tuples only). Panics if it fails.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let out = check(
            "psql",
            self.command("psql")
                .arg("-h")
                .arg(self.dir.path())
                .args([
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                    "-d",
                    database,
                ])
                .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
                .output(),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Restarts the server (`pg_ctl restart -m fast`): every connection is cut.
    pub fn restart(&self) {
        check(
            "pg_ctl restart",
            self.pg_ctl(&["restart", "-w", "-t", "60", "-m", "fast"]),
        );
    }

    /// Stops the server (`pg_ctl stop -m fast`: every connection is cut), keeps it down
    /// for `down`, and starts it again on the same data directory and port.
    pub fn restart_after(&self, down: std::time::Duration) {
        check(
            "pg_ctl stop",
            self.pg_ctl(&["stop", "-w", "-t", "60", "-m", "fast"]),
        );
        std::thread::sleep(down);
        check("pg_ctl start", self.pg_ctl(&["start", "-w", "-t", "60"]));
    }

    fn pg_ctl(&self, args: &[&str]) -> std::io::Result<Output> {
        self.command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .args(args)
            .output()
    }

    fn command(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        let mut c = match self.owner {
            Some(_) => {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(path);
                c
            }
            None => Command::new(path),
        };
        // Somewhere the postgres user may enter.
        c.current_dir(self.dir.path());
        c
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["stop", "-w", "-m", "immediate"]);
    }
}
