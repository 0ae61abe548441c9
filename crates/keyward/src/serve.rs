//! `keyward serve`: configuration, first start, and the service's lifetime.

use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use keyward_kms::seal::Seal;
use keyward_kms::{AesRootKey, Kms, KmsConfig, RootKey, SystemClock};
use keyward_server::seal::{FileUnsealer, Node, Opener, ShamirUnsealer};
use keyward_store::{DatabaseUrl, PostgresStore, SqliteStore, Store};
use serde::Deserialize;

use crate::cli::ServeArgs;
use crate::files::CliError;

/// With `audit_sync = "interval"`, how long audit records may wait for an fsync.
const AUDIT_SYNC_WITHIN: Duration = Duration::from_millis(10);

/// The configuration file's shape; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    region: Option<String>,
    account: Option<String>,
    partition: Option<String>,
    #[serde(default)]
    hostnames: Vec<String>,
    client_auth: Option<String>,
    server_cert_ttl: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    rate_limit: Option<f64>,
    audit_dir: Option<PathBuf>,
    audit_checkpoint_records: Option<u64>,
    audit_checkpoint_interval: Option<String>,
    audit_sync: Option<String>,
    operators: Option<Vec<String>>,
    pkcs11_module: Option<PathBuf>,
    pkcs11_pin_file: Option<PathBuf>,
}

/// Validated configuration.
#[derive(Debug)]
struct Config {
    data_dir: PathBuf,
    /// PostgreSQL instead of SQLite in the data directory.
    database: Option<DatabaseUrl>,
    listen: SocketAddr,
    kms: KmsConfig,
    tls: keyward_server::tls::TlsSettings,
    rate_limit: Option<f64>,
    /// `None` only with the benchmark-only KEYWARD_BENCH_NO_AUDIT.
    audit: Option<keyward_server::audit::AuditSettings>,
    /// The benchmark-only plain-HTTP listener (KEYWARD_BENCH_PLAIN_LISTEN).
    bench_plain: Option<SocketAddr>,
    /// Principals that may seal the server.
    operators: Vec<String>,
    /// The HSM, for a root key sealed by one: its module and PIN file.
    pkcs11: (Option<PathBuf>, Option<PathBuf>),
}

fn bad(setting: &str, why: impl std::fmt::Display) -> CliError {
    CliError::usage(format!("invalid setting {setting}: {why}"))
}

/// Flags, then `KEYWARD_*` variables, then the file, then defaults; validated before
/// anything is created or bound.
fn configure(args: &ServeArgs) -> Result<Config, CliError> {
    let file: FileConfig = match &args.config {
        Some(path) => {
            let text = fs::read_to_string(path)
                .map_err(|e| bad("--config", format!("{}: {e}", path.display())))?;
            toml::from_str(&text)
                .map_err(|e| bad("--config", format!("{}: {e}", path.display())))?
        }
        None => FileConfig::default(),
    };
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let pick = |flag: &Option<String>, var: &str, from_file: &Option<String>| {
        flag.clone()
            .or_else(|| env(var))
            .or_else(|| from_file.clone())
    };

    let data_dir = args
        .data_dir
        .clone()
        .or_else(|| env("KEYWARD_DATA_DIR").map(PathBuf::from))
        .or(file.data_dir)
        .or_else(default_data_dir)
        .ok_or_else(|| bad("data_dir", "no default: set --data-dir or KEYWARD_DATA_DIR"))?;
    let database = database_url(args.database_url.as_deref())?;
    let listen = pick(&args.listen, "KEYWARD_LISTEN", &file.listen)
        .unwrap_or_else(|| "127.0.0.1:8443".into());
    let listen: SocketAddr = listen
        .parse()
        .map_err(|_| bad("listen", format!("{listen:?} is not ADDR:PORT")))?;
    let region =
        pick(&args.region, "KEYWARD_REGION", &file.region).unwrap_or_else(|| "us-east-1".into());
    if region.is_empty()
        || !region
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        return Err(bad(
            "region",
            format!("{region:?} must be lowercase letters, digits and '-'"),
        ));
    }
    let account = pick(&args.account, "KEYWARD_ACCOUNT", &file.account)
        .unwrap_or_else(|| "111122223333".into());
    if account.len() != 12 || !account.bytes().all(|c| c.is_ascii_digit()) {
        return Err(bad("account", format!("{account:?} must be 12 digits")));
    }
    let partition = file.partition.unwrap_or_else(|| "aws".into());
    if partition.is_empty()
        || !partition
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c == b'-')
    {
        return Err(bad(
            "partition",
            format!("{partition:?} must be lowercase letters and '-'"),
        ));
    }
    let mut hostnames = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    for h in file.hostnames.iter().chain(&args.hostnames) {
        if h.is_empty() || h.contains(char::is_whitespace) {
            return Err(bad(
                "hostname",
                format!("{h:?} is not a host name or IP address"),
            ));
        }
        if !hostnames.contains(h) {
            hostnames.push(h.clone());
        }
    }
    let client_auth = pick(&args.client_auth, "KEYWARD_CLIENT_AUTH", &file.client_auth)
        .unwrap_or_else(|| "optional".into());
    let client_auth = client_auth.parse().map_err(|e| bad("client_auth", e))?;
    let ttl = pick(
        &args.server_cert_ttl,
        "KEYWARD_SERVER_CERT_TTL",
        &file.server_cert_ttl,
    )
    .unwrap_or_else(|| "24h".into());
    let cert_ttl = crate::cli::parse_ttl(&ttl).map_err(|e| bad("server_cert_ttl", e))?;
    if cert_ttl < time::Duration::seconds(60) {
        return Err(bad("server_cert_ttl", "must be at least 60s"));
    }
    let path_setting = |flag: &Option<PathBuf>, var: &str, from_file: &Option<PathBuf>| {
        flag.clone()
            .or_else(|| env(var).map(PathBuf::from))
            .or_else(|| from_file.clone())
    };
    let provided = match (
        path_setting(&args.tls_cert, "KEYWARD_TLS_CERT", &file.tls_cert),
        path_setting(&args.tls_key, "KEYWARD_TLS_KEY", &file.tls_key),
    ) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some(provided_cert(&cert, &key)?),
        (Some(_), None) => return Err(bad("tls_key", "--tls-cert needs --tls-key")),
        (None, Some(_)) => return Err(bad("tls_cert", "--tls-key needs --tls-cert")),
    };
    let rate_limit = match args
        .rate_limit
        .clone()
        .or_else(|| env("KEYWARD_RATE_LIMIT"))
    {
        Some(v) => v
            .parse::<f64>()
            .ok()
            .filter(|r| r.is_finite() && *r >= 0.0)
            .ok_or_else(|| bad("rate_limit", format!("{v:?} is not a rate (requests/s)")))?,
        None => file.rate_limit.unwrap_or(0.0),
    };
    if !(rate_limit.is_finite() && rate_limit >= 0.0) {
        return Err(bad("rate_limit", "must be 0 (no limit) or more"));
    }
    let rate_limit = (rate_limit > 0.0).then_some(rate_limit);
    let audit_dir = path_setting(&args.audit_dir, "KEYWARD_AUDIT_DIR", &file.audit_dir)
        .unwrap_or_else(|| data_dir.join(keyward_server::audit::DEFAULT_DIR));
    let records = match args
        .audit_checkpoint_records
        .clone()
        .or_else(|| env("KEYWARD_AUDIT_CHECKPOINT_RECORDS"))
    {
        Some(v) => v.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
            bad(
                "audit_checkpoint_records",
                format!("{v:?} is not a positive number"),
            )
        })?,
        None => file
            .audit_checkpoint_records
            .unwrap_or(keyward_server::audit::DEFAULT_EVERY.records),
    };
    if records == 0 {
        return Err(bad("audit_checkpoint_records", "must be at least 1"));
    }
    let interval = match pick(
        &args.audit_checkpoint_interval,
        "KEYWARD_AUDIT_CHECKPOINT_INTERVAL",
        &file.audit_checkpoint_interval,
    ) {
        Some(v) => {
            let d = crate::cli::parse_ttl(&v).map_err(|e| bad("audit_checkpoint_interval", e))?;
            std::time::Duration::try_from(d)
                .ok()
                .filter(|d| *d >= Duration::from_secs(1))
                .ok_or_else(|| bad("audit_checkpoint_interval", "must be at least 1s"))?
        }
        None => keyward_server::audit::DEFAULT_EVERY.interval,
    };
    let sync = match pick(&args.audit_sync, "KEYWARD_AUDIT_SYNC", &file.audit_sync)
        .as_deref()
        .unwrap_or("batch")
    {
        "batch" => keyward_audit::sink::SyncPolicy::EveryBatch,
        "interval" => keyward_audit::sink::SyncPolicy::Within(AUDIT_SYNC_WITHIN),
        other => {
            return Err(bad(
                "audit_sync",
                format!("{other:?}: use batch or interval"),
            ));
        }
    };
    let bench_plain = match bench_switch("KEYWARD_BENCH_PLAIN_LISTEN")? {
        Some(addr) => Some(addr.parse::<SocketAddr>().map_err(|_| {
            bad(
                "KEYWARD_BENCH_PLAIN_LISTEN",
                format!("{addr:?} is not ADDR:PORT"),
            )
        })?),
        None => None,
    };
    let audit = if bench_switch("KEYWARD_BENCH_NO_AUDIT")?.is_some_and(|v| v == "1") {
        None
    } else {
        Some(keyward_server::audit::AuditSettings {
            dir: audit_dir,
            every: keyward_server::audit::CheckpointEvery { records, interval },
            sync,
        })
    };
    let operators = file.operators.unwrap_or_else(|| vec!["admin".to_owned()]);
    if operators.iter().any(|o| o.is_empty()) {
        return Err(bad("operators", "a principal cannot be empty"));
    }
    Ok(Config {
        data_dir: data_dir.clone(),
        database,
        listen,
        kms: KmsConfig {
            partition,
            region,
            account,
        },
        tls: keyward_server::tls::TlsSettings {
            names: hostnames,
            client_auth,
            cert_ttl,
            provided,
            keep: Some(data_dir.clone()),
        },
        rate_limit,
        audit,
        bench_plain,
        operators,
        pkcs11: (
            path_setting(
                &args.pkcs11_module,
                "KEYWARD_PKCS11_MODULE",
                &file.pkcs11_module,
            ),
            path_setting(
                &args.pkcs11_pin_file,
                "KEYWARD_PKCS11_PIN_FILE",
                &file.pkcs11_pin_file,
            ),
        ),
    })
}

/// A benchmark-only switch (`KEYWARD_BENCH_*`), which weakens the service: honoured only
/// in a build made for benchmarks (`--features bench-switches`, as `bench/` builds), and
/// refused otherwise, so that no environment can turn them on in a production binary.
fn bench_switch(name: &str) -> Result<Option<String>, CliError> {
    match std::env::var(name).ok().filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(_) if !cfg!(feature = "bench-switches") => Err(bad(
            name,
            "a benchmark-only switch; this build has none (bench/ builds with --features bench-switches)",
        )),
        Some(v) => Ok(Some(v)),
    }
}

/// Reads an operator's certificate chain and key, and checks that they belong together.
fn provided_cert(cert: &Path, key: &Path) -> Result<keyward_server::tls::Provided, CliError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Result<Vec<_>, _> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad("tls_cert", format!("{}: {e}", cert.display())))?
        .collect();
    let chain = chain.map_err(|e| bad("tls_cert", format!("{}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(bad(
            "tls_cert",
            format!("{}: no certificate", cert.display()),
        ));
    }
    let key = zeroize::Zeroizing::new(
        PrivateKeyDer::from_pem_file(key)
            .map_err(|e| bad("tls_key", format!("{}: {e}", key.display())))?,
    );
    keyward_pki::tls::certified_key(chain.clone(), &key)
        .map_err(|e| bad("tls_key", format!("does not match --tls-cert: {e}")))?;
    Ok(keyward_server::tls::Provided { chain, key })
}

/// The PostgreSQL database, if one is named: the flag, else `KEYWARD_DATABASE_URL`.
/// `None` means SQLite in the data directory.
pub(crate) fn database_url(flag: Option<&str>) -> Result<Option<DatabaseUrl>, CliError> {
    let url = flag.map(str::to_owned).or_else(|| {
        std::env::var("KEYWARD_DATABASE_URL")
            .ok()
            .filter(|v| !v.is_empty())
    });
    url.map(|u| DatabaseUrl::parse(&u).map_err(|e| bad("database_url", e)))
        .transpose()
}

/// The store: PostgreSQL if `database` names one, else SQLite in `dir`.
pub(crate) fn open_store(
    dir: &Path,
    database: Option<&DatabaseUrl>,
) -> Result<Arc<dyn Store>, CliError> {
    let store: Arc<dyn Store> = match database {
        Some(url) => Arc::new(
            PostgresStore::open(url)
                .map_err(|e| failed(&format!("opening the database {url}"))(&e))?,
        ),
        None => Arc::new(
            SqliteStore::open(&dir.join("keyward.db"))
                .map_err(|e| failed("opening the database")(&e))?,
        ),
    };
    Ok(store)
}

/// Opens the KMS over `database` (else SQLite in `dir`) for a command run beside the
/// service: with the root key in `dir` (creating the development root key on first use),
/// or, if the root key is sealed by shares, with shares asked for on the terminal.
pub(crate) fn open_kms(
    dir: &Path,
    database: Option<&DatabaseUrl>,
    config: KmsConfig,
) -> Result<Kms, CliError> {
    let store = open_store(dir, database)?;
    let root = root_key(dir, &store)?;
    Kms::open(store, root, Arc::new(SystemClock), config).map_err(|e| failed("opening the KMS")(&e))
}

/// The root key for a command run beside the service (see [`open_kms`]).
pub(crate) fn root_key(dir: &Path, store: &Arc<dyn Store>) -> Result<Box<dyn RootKey>, CliError> {
    let seal = Seal::load(&**store).map_err(|e| failed("reading the seal")(&e))?;
    if let Some(root) = sealed_root(&seal)? {
        return Ok(Box::new(
            AesRootKey::new(&root, seal.provider()).map_err(|e| failed("root key")(&e))?,
        ));
    }
    Ok(Box::new(development_root_key(dir)?))
}

/// The `file` provider's root key in `dir`, made (and said so) on first use.
fn development_root_key(dir: &Path) -> Result<AesRootKey, CliError> {
    let (root, created) = AesRootKey::load_or_create_file(&dir.join(ROOT_KEY_FILE))
        .map_err(|e| failed("root key")(&e))?;
    if created {
        eprintln!(
            "keyward: created a development root key at {}",
            dir.join(ROOT_KEY_FILE).display()
        );
    }
    Ok(root)
}

/// The root key a seal gives a command: from shares asked for on the terminal (or read
/// from standard input), or from the HSM named by KEYWARD_PKCS11_MODULE and
/// KEYWARD_PKCS11_PIN_FILE. `None` for the file provider.
pub(crate) fn sealed_root(seal: &Seal) -> Result<Option<zeroize::Zeroizing<[u8; 32]>>, CliError> {
    match seal {
        Seal::File => Ok(None),
        Seal::Shamir(seal) => crate::operator::shares_from_terminal(seal).map(Some),
        Seal::Pkcs11(seal) => {
            let access = hsm_access_or_env(None, None)?;
            seal.unseal(&access)
                .map(Some)
                .map_err(|e| failed("unsealing")(&e))
        }
    }
}

/// [`hsm_access`] with the given paths, else KEYWARD_PKCS11_MODULE and
/// KEYWARD_PKCS11_PIN_FILE.
pub(crate) fn hsm_access_or_env(
    module: Option<PathBuf>,
    pin_file: Option<PathBuf>,
) -> Result<keyward_kms::hsm::HsmAccess, CliError> {
    let env = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    hsm_access(
        &module.or_else(|| env("KEYWARD_PKCS11_MODULE")),
        &pin_file.or_else(|| env("KEYWARD_PKCS11_PIN_FILE")),
    )
}

/// The HSM's module and PIN, which a root key sealed by one needs.
pub(crate) fn hsm_access(
    module: &Option<PathBuf>,
    pin_file: &Option<PathBuf>,
) -> Result<keyward_kms::hsm::HsmAccess, CliError> {
    let module = module.as_deref().ok_or_else(|| {
        bad(
            "pkcs11_module",
            "the root key is sealed by an HSM: name its PKCS#11 module",
        )
    })?;
    let pin_file = pin_file.as_deref().ok_or_else(|| {
        bad(
            "pkcs11_pin_file",
            "the root key is sealed by an HSM: name the file holding its PIN",
        )
    })?;
    if !module.is_file() {
        return Err(bad(
            "pkcs11_module",
            format!("{} does not exist", module.display()),
        ));
    }
    keyward_kms::hsm::HsmAccess::new(module, pin_file).map_err(|e| bad("pkcs11_pin_file", e))
}

/// The development root key's file in the data directory.
pub(crate) const ROOT_KEY_FILE: &str = "root.key";

/// The data directory: the flag, else `KEYWARD_DATA_DIR`, else the default.
pub(crate) fn data_dir(flag: Option<&Path>) -> Option<PathBuf> {
    flag.map(Path::to_path_buf)
        .or_else(|| {
            std::env::var_os("KEYWARD_DATA_DIR")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .or_else(default_data_dir)
}

fn default_data_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .map(|d| d.join("keyward"))
}

pub(crate) fn failed(what: &str) -> impl Fn(&dyn std::fmt::Display) -> CliError + '_ {
    move |e| CliError::failed(format!("{what}: {e}"))
}

pub(crate) fn run(args: &ServeArgs) -> Result<(), CliError> {
    let config = configure(args)?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KEYWARD_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();

    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&config.data_dir)
        .map_err(|e| failed("cannot create the data directory")(&e))?;
    let dir = config.data_dir.clone();
    let store = open_store(&dir, config.database.as_ref())?;
    let seal = Seal::load(&*store).map_err(|e| failed("reading the seal")(&e))?;
    let opener = opener(&config, store.clone());
    let ca_path = dir.join("ca.pem");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| failed("starting the runtime")(&e))?;
    // Opening the service starts its background tasks (so within the runtime), and may
    // block on the store (so not on one of its threads).
    if !matches!(seal, Seal::File) && dir.join(ROOT_KEY_FILE).exists() {
        return Err(CliError::failed(format!(
            "{} exists, but the root key is sealed by `{}`: a migration was cut short, or the \
             file is left over; remove it (after checking that `keyward operator migrate-seal` \
             is not what you meant to finish)",
            dir.join(ROOT_KEY_FILE).display(),
            seal.provider()
        )));
    }
    let node = {
        let _runtime = runtime.enter();
        let node = match seal {
            Seal::File => {
                let root = development_root_key(&dir)?;
                let (tls, audit) = opener(Box::new(root)).map_err(|e| failed("starting")(&e))?;
                let running = keyward_server::seal::Running::start(tls, audit);
                Node::unsealed(
                    running,
                    Box::new(FileUnsealer(dir.join(ROOT_KEY_FILE))),
                    opener,
                )
            }
            Seal::Pkcs11(_) => {
                let access = hsm_access(&config.pkcs11.0, &config.pkcs11.1)?;
                let unsealer = keyward_server::seal::Pkcs11Unsealer::new(store.clone(), access);
                // The server unseals itself; if the token cannot, it starts sealed and
                // `keyward operator unseal` asks the token again.
                match keyward_server::seal::Unsealer::give(&unsealer, None) {
                    Ok(Some(root)) => {
                        let (tls, audit) = opener(root).map_err(|e| failed("starting")(&e))?;
                        Node::unsealed(
                            keyward_server::seal::Running::start(tls, audit),
                            Box::new(unsealer),
                            opener,
                        )
                    }
                    Ok(None) => return Err(CliError::failed("the HSM gave no root key")),
                    Err(e) => {
                        tracing::error!(error = %e, "the HSM did not unseal the root key: starting sealed");
                        eprintln!(
                            "keyward: the HSM did not unseal the root key ({e}): starting sealed"
                        );
                        let tls = sealed_listener(&config)?;
                        Node::sealed(Arc::new(tls), Box::new(unsealer), opener)
                    }
                }
            }
            Seal::Shamir(_) => {
                let tls = sealed_listener(&config)?;
                Node::sealed(
                    Arc::new(tls),
                    Box::new(ShamirUnsealer::new(store.clone())),
                    opener,
                )
            }
        };
        Arc::new(node)
    };
    let admin = match node.running() {
        Some(run) => first_admin_key(run.kms(), &dir)?,
        None => None,
    };

    let node_for_shutdown = node.clone();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| failed(&format!("cannot listen on {}", config.listen))(&e))?;
        let addr = listener.local_addr().map_err(|e| failed("listener")(&e))?;
        // Listen for SIGTERM before saying we are up: a stop sent right after the banner
        // must be a graceful one.
        let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        print_banner(
            &config,
            addr,
            &ca_path,
            admin.as_deref(),
            &dir,
            &node.status(),
        );

        // Benchmarks only: the same API over plain HTTP, to measure what TLS costs.
        let plain = match config.bench_plain {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| failed(&format!("KEYWARD_BENCH_PLAIN_LISTEN {addr}"))(&e))?,
            ),
            None => None,
        };
        let limits = keyward_server::limits::RateLimits::new(
            config.rate_limit,
            config.rate_limit.map_or(1.0, |r| 2.0 * r),
        );
        keyward_server::server::serve(
            node,
            limits,
            config.operators.clone(),
            listener,
            plain,
            shutdown_signal(term),
        )
        .await
        .map_err(|e| failed("server")(&e))
    })?;
    if let Some(run) = node_for_shutdown.running()
        && let Some(audit) = run.audit()
        && !audit.checkpoint_blocking()
    {
        eprintln!("keyward: the final audit checkpoint could not be written");
    }
    eprintln!("keyward: stopped");
    Ok(())
}

/// What opens the service on a root key: the KMS over the store (refusing a root key
/// that is not this store's), the CA and the listener's certificate, the audit log, and
/// on first start `ca.pem`.
fn opener(config: &Config, store: Arc<dyn Store>) -> Opener {
    let kms_config = config.kms.clone();
    let tls_settings = config.tls.clone();
    let audit_settings = config.audit.clone();
    let dir = config.data_dir.clone();
    Box::new(move |root| {
        let kms = Arc::new(Kms::open(
            store.clone(),
            root,
            Arc::new(SystemClock),
            kms_config.clone(),
        )?);
        let tls = Arc::new(keyward_server::tls::TlsState::start(
            kms.clone(),
            tls_settings.clone(),
        )?);
        let audit = match &audit_settings {
            Some(settings) => Some(Arc::new(keyward_server::audit::Auditor::start(
                &kms, settings,
            )?)),
            None => {
                tracing::warn!(
                    "audit log off (KEYWARD_BENCH_NO_AUDIT): for benchmarks only, never in production"
                );
                None
            }
        };
        write_file(&dir.join("ca.pem"), tls.root_pem().as_bytes(), 0o644)
            .map_err(|e| keyward_server::ServerError::Internal(e.to_string()))?;
        Ok((tls, audit))
    })
}

/// The listener of a server that starts sealed: the operator's certificate if one was
/// given, else the one the server kept from its last run (or `keyward operator init`).
fn sealed_listener(config: &Config) -> Result<rustls::ServerConfig, CliError> {
    if let Some(p) = &config.tls.provided {
        let certified = keyward_pki::tls::certified_key(p.chain.clone(), &p.key)
            .map_err(|e| bad("tls_key", e))?;
        return keyward_pki::tls::server_config(
            Arc::new(keyward_pki::tls::SwappableCert::new(certified)),
            keyward_pki::ClientAuth::Off,
            &[],
            Vec::new(),
        )
        .map_err(|e| failed("TLS")(&e));
    }
    let (tls, info) = keyward_server::tls::kept_config(&config.data_dir).map_err(|e| {
        CliError::failed(format!(
            "{e}: a server sealed by shares starts with the certificate it kept; give one with \
             --tls-cert and --tls-key"
        ))
    })?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if info.not_after <= now {
        return Err(CliError::failed(format!(
            "the kept listener certificate in {} expired while the server was down; give one \
             with --tls-cert and --tls-key to start sealed, and unseal",
            config.data_dir.display()
        )));
    }
    Ok(tls)
}

async fn shutdown_signal(term: Option<tokio::signal::unix::Signal>) {
    let Some(mut term) = term else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    eprintln!("keyward: shutting down");
}

pub(crate) fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CliError> {
    use std::io::Write as _;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(|e| failed(&format!("writing {}", path.display()))(&e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| failed(&format!("writing {}", path.display()))(&e))
}

/// On first start, makes the administrator's access key and stores its credentials in
/// `admin.env` (mode 0600). Returns the secret only when it was made now.
pub(crate) fn first_admin_key(kms: &Kms, dir: &Path) -> Result<Option<String>, CliError> {
    let env_path = dir.join("admin.env");
    if !kms
        .store()
        .access_keys()
        .map_err(|e| failed("access keys")(&e))?
        .is_empty()
    {
        return Ok(None);
    }
    let now = SystemClock.now_secs();
    let key = keyward_server::access::create(kms, "admin", now)
        .map_err(|e| failed("creating the admin key")(&e))?;
    let text = format!(
        "export AWS_ACCESS_KEY_ID={}\nexport AWS_SECRET_ACCESS_KEY={}\n",
        key.access_key_id, &*key.secret
    );
    write_file(&env_path, text.as_bytes(), 0o600)?;
    Ok(Some(key.access_key_id))
}

trait NowSecs {
    fn now_secs(&self) -> i64;
}

impl NowSecs for SystemClock {
    fn now_secs(&self) -> i64 {
        keyward_kms::Clock::now(self)
    }
}

fn print_banner(
    config: &Config,
    addr: SocketAddr,
    ca: &Path,
    created: Option<&str>,
    dir: &Path,
    seal: &keyward_server::seal::SealStatus,
) {
    let host = if addr.ip().is_unspecified() {
        "localhost".to_owned()
    } else {
        addr.ip().to_string()
    };
    let host = if addr.is_ipv6() && host != "localhost" {
        format!("[{host}]")
    } else {
        host
    };
    let endpoint = format!("https://{host}:{}", addr.port());
    let env_path = dir.join("admin.env");
    println!("keyward: serving the AWS KMS API at {endpoint} (TLS 1.3)");
    println!("keyward: data directory {}", dir.display());
    if let Some(url) = &config.database {
        println!("keyward: database {url}");
    }
    match (seal.sealed, seal.threshold, seal.shares) {
        (false, ..) => {}
        (true, Some(t), Some(n)) => println!(
            "keyward: SEALED (root key provider {}, {t} of {n} shares needed): key operations \
             are refused until `keyward operator unseal` is given them",
            seal.provider
        ),
        (true, ..) => println!(
            "keyward: SEALED (root key provider {}): key operations are refused until \
             `keyward operator unseal` unseals it",
            seal.provider
        ),
    }
    if created.is_some() {
        println!("keyward: created the administrator's access key; its secret is shown once here");
        println!("keyward: and kept in {} (mode 0600)", env_path.display());
    }
    println!("export AWS_ENDPOINT_URL_KMS={endpoint}");
    println!("export AWS_CA_BUNDLE={}", ca.display());
    println!("export AWS_DEFAULT_REGION={}", config.kms.region);
    match fs::read_to_string(&env_path) {
        Ok(text) if created.is_some() => print!("{text}"),
        Ok(_) => println!(
            ". {}   # AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            env_path.display()
        ),
        Err(_) => println!(
            "# administrator credentials: {} is missing",
            env_path.display()
        ),
    }
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
}
