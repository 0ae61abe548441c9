//! `keyward operator ...`: the root key's seal. Init, rekey and migration work on a data
//! directory (they need the root key, from its file or from shares); unseal, seal and
//! status talk to a running server.

use std::fs;
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::os::unix::fs::DirBuilderExt as _;
use std::path::Path;
use std::sync::Arc;

use keyward_kms::hsm::{HsmAccess, Pkcs11Seal};
use keyward_kms::seal::{Progress, Seal, ShamirSeal, ShareText};
use keyward_kms::{AesRootKey, Kms, KmsConfig, ROOT_CHECK, SystemClock, read_key_file};
use keyward_store::Store;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::cli::{DataDirArgs, EndpointArgs, OperatorCommand, Pkcs11Args, SplitArgs};
use crate::files::CliError;
use crate::kms_client::{Endpoint, HttpKms, env_bundle, env_endpoint};
use crate::serve::{ROOT_KEY_FILE, data_dir, database_url, failed, open_store};

pub(crate) fn run(command: &OperatorCommand) -> Result<(), CliError> {
    match command {
        OperatorCommand::Init {
            provider,
            split,
            hsm,
            hostnames,
            dir,
        } => init(provider, split, hsm, hostnames, dir),
        OperatorCommand::Unseal { endpoint } => unseal(endpoint),
        OperatorCommand::Seal { endpoint } => seal(endpoint),
        OperatorCommand::Status { endpoint } => status(endpoint),
        OperatorCommand::Rekey { split, dir } => rekey(split, dir),
        OperatorCommand::MigrateSeal {
            to,
            split,
            hsm,
            dir,
        } => migrate(to, split, hsm, dir),
    }
}

/// The data directory and the store in it (or the PostgreSQL one).
fn open(dir: &DataDirArgs, create: bool) -> Result<(std::path::PathBuf, Arc<dyn Store>), CliError> {
    let path = data_dir(dir.data_dir.as_deref())
        .ok_or_else(|| CliError::usage("invalid setting data_dir: no default; set --data-dir"))?;
    if create {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&path)
            .map_err(|e| failed("cannot create the data directory")(&e))?;
    } else if !path.is_dir() {
        return Err(CliError::usage(format!(
            "invalid setting data_dir: {} does not exist",
            path.display()
        )));
    }
    let database = database_url(dir.database_url.as_deref())?;
    let store = open_store(&path, database.as_ref())?;
    Ok((path, store))
}

fn load_seal(store: &dyn Store) -> Result<Seal, CliError> {
    Seal::load(store).map_err(|e| failed("reading the seal")(&e))
}

/// Opens the KMS on `root`, which proves that it is this store's root key.
fn kms_on(
    store: &Arc<dyn Store>,
    root: &[u8; 32],
    provider: &'static str,
) -> Result<Kms, CliError> {
    let key = AesRootKey::new(root, provider).map_err(|e| failed("root key")(&e))?;
    Kms::open(
        store.clone(),
        Box::new(key),
        Arc::new(SystemClock),
        KmsConfig::default(),
    )
    .map_err(|e| failed("opening the KMS")(&e))
}

fn check_split(split: &SplitArgs) -> Result<(), CliError> {
    keyward_kms::shamir::check_split(split.shares, split.threshold)
        .map_err(|e| CliError::usage(format!("invalid setting --shares/--threshold: {e}")))?;
    recipients(split).map(drop)
}

/// The holders' age public keys: none, or one per share.
fn recipients(split: &SplitArgs) -> Result<Vec<age::x25519::Recipient>, CliError> {
    let bad = |why: String| CliError::usage(format!("invalid setting --recipient: {why}"));
    if !split.recipients.is_empty() && split.recipients.len() != usize::from(split.shares) {
        return Err(bad(format!(
            "{} given for {} shares: give one per share, or none",
            split.recipients.len(),
            split.shares
        )));
    }
    split
        .recipients
        .iter()
        .map(|r| {
            r.parse::<age::x25519::Recipient>()
                .map_err(|e| bad(format!("{r:?}: {e}")))
        })
        .collect()
}

/// The HSM named by the flags, else by KEYWARD_PKCS11_MODULE and KEYWARD_PKCS11_PIN_FILE.
fn hsm_access(hsm: &Pkcs11Args) -> Result<HsmAccess, CliError> {
    crate::serve::hsm_access_or_env(hsm.pkcs11_module.clone(), hsm.pkcs11_pin_file.clone())
}

/// A new seal of `root` by `provider`, and the shares to show (for `shamir`).
fn new_seal(
    provider: &str,
    root: &[u8; 32],
    split: &SplitArgs,
    hsm: &Pkcs11Args,
) -> Result<(Seal, Vec<ShareText>), CliError> {
    match provider {
        "shamir" => {
            check_split(split)?;
            let (seal, shares) = ShamirSeal::create(root, split.shares, split.threshold)
                .map_err(|e| failed("splitting")(&e))?;
            Ok((Seal::Shamir(seal), shares))
        }
        "pkcs11" => {
            let access = hsm_access(hsm)?;
            let seal = Pkcs11Seal::create(&access, &hsm.pkcs11_token, &hsm.pkcs11_key_label, root)
                .map_err(|e| failed("sealing with the HSM")(&e))?;
            Ok((Seal::Pkcs11(seal), Vec::new()))
        }
        other => Err(CliError::usage(format!(
            "invalid setting provider: {other:?}: use shamir or pkcs11"
        ))),
    }
}

fn init(
    provider: &str,
    split: &SplitArgs,
    hsm: &Pkcs11Args,
    hostnames: &[String],
    dir: &DataDirArgs,
) -> Result<(), CliError> {
    match provider {
        "shamir" => check_split(split)?,
        "pkcs11" => drop(hsm_access(hsm)?),
        other => {
            return Err(CliError::usage(format!(
                "invalid setting provider: {other:?}: use shamir or pkcs11"
            )));
        }
    }
    let (path, store) = open(dir, true)?;
    let has_root = !matches!(load_seal(&*store)?, Seal::File)
        || store
            .meta(ROOT_CHECK)
            .map_err(|e| failed("reading the store")(&e))?
            .is_some()
        || path.join(ROOT_KEY_FILE).exists();
    if has_root {
        return Err(CliError::with_code(
            73,
            format!(
                "{} already has a root key: to seal it with shares, `keyward operator \
                 migrate-seal --to shamir`; to make new shares, `keyward operator rekey`",
                path.display()
            ),
        ));
    }
    let mut root = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(&mut root[..])
        .map_err(|_| CliError::failed("the random number generator failed"))?;
    let (seal, shares) = new_seal(provider, &root, split, hsm)?;
    seal.save(&*store)
        .map_err(|e| failed("saving the seal")(&e))?;
    let kms = Arc::new(kms_on(&store, &root, seal.provider())?);
    prepare_listener(&kms, &path, hostnames)?;
    let admin = crate::serve::first_admin_key(&kms, &path)?;
    if shares.is_empty() {
        println!(
            "keyward: the root key is sealed by the key {:?} in the HSM token {:?}",
            hsm.pkcs11_key_label, hsm.pkcs11_token
        );
    } else {
        print_shares(&shares, split)?;
    }
    if admin.is_some() {
        println!(
            "keyward: the administrator's access key is in {} (mode 0600)",
            path.join("admin.env").display()
        );
    }
    if shares.is_empty() {
        println!(
            "keyward: `keyward serve --pkcs11-module ... --pkcs11-pin-file ...` unseals itself"
        );
    } else {
        println!(
            "keyward: `keyward serve` now starts sealed; unseal it with `keyward operator \
             unseal`, once per share"
        );
    }
    Ok(())
}

/// The CA, and the listener's certificate kept in the data directory for a sealed start,
/// for the names `keyward serve` uses by default and `hostnames`; `ca.pem` beside it.
pub(crate) fn prepare_listener(
    kms: &Arc<Kms>,
    dir: &Path,
    hostnames: &[String],
) -> Result<(), CliError> {
    let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
    for h in hostnames {
        if h.is_empty() || h.contains(char::is_whitespace) {
            return Err(CliError::usage(format!(
                "invalid setting hostname: {h:?} is not a host name or IP address"
            )));
        }
        if !names.contains(h) {
            names.push(h.clone());
        }
    }
    let tls = keyward_server::tls::TlsState::start(
        kms.clone(),
        keyward_server::tls::TlsSettings {
            names,
            client_auth: keyward_pki::ClientAuth::Off,
            cert_ttl: time::Duration::hours(24),
            provided: None,
            keep: Some(dir.to_path_buf()),
        },
    )
    .map_err(|e| failed("the listener's certificate")(&e))?;
    crate::serve::write_file(&dir.join("ca.pem"), tls.root_pem().as_bytes(), 0o644)
}

/// Prints the shares, each encrypted to its holder if `split` names holders.
fn print_shares(shares: &[ShareText], split: &SplitArgs) -> Result<(), CliError> {
    let threshold = split.threshold;
    let holders = recipients(split)?;
    for (i, share) in shares.iter().enumerate() {
        match holders.get(i) {
            None => println!("Unseal share {}: {}", i + 1, share.as_str()),
            Some(holder) => {
                let sealed = age::encrypt_and_armor(holder, share.as_bytes())
                    .map_err(|e| failed("encrypting a share")(&e))?;
                println!("Unseal share {} for {holder}:\n{sealed}", i + 1);
            }
        }
    }
    println!(
        "keyward: {} unseal shares; any {threshold} of them unseal. They are shown only now: \
         give each to its own holder and keep none of them beside the data.",
        shares.len()
    );
    Ok(())
}

/// Asks for shares until `seal`'s threshold is reached: on the terminal without echo
/// (a bad share is named and asked for again), else one per line of standard input.
pub(crate) fn shares_from_terminal(seal: &ShamirSeal) -> Result<Zeroizing<[u8; 32]>, CliError> {
    let mut unsealing = seal.unsealing();
    let tty = std::io::stdin().is_terminal();
    let mut lines = std::io::stdin().lock();
    eprintln!(
        "keyward: the root key is sealed by unseal shares: {} of {} are needed",
        seal.threshold(),
        seal.shares()
    );
    loop {
        let n = unsealing.given() + 1;
        let share = if tty {
            Zeroizing::new(
                rpassword::prompt_password(format!("Unseal share {n} of {}: ", seal.threshold()))
                    .map_err(|e| failed("reading a share")(&e))?,
            )
        } else {
            let mut line = Zeroizing::new(String::new());
            let read = lines
                .read_line(&mut line)
                .map_err(|e| failed("reading a share")(&e))?;
            if read == 0 {
                return Err(CliError::failed(format!(
                    "standard input ended after {} of {} shares",
                    unsealing.given(),
                    seal.threshold()
                )));
            }
            line
        };
        match unsealing.give(&share) {
            Ok(Progress::Need { .. }) => {}
            Ok(Progress::Unsealed(root)) => return Ok(root),
            Err(e) if tty => eprintln!("keyward: {e}; try again"),
            Err(e) => return Err(CliError::failed(format!("share {n}: {e}"))),
        }
    }
}

fn rekey(split: &SplitArgs, dir: &DataDirArgs) -> Result<(), CliError> {
    check_split(split)?;
    let (_, store) = open(dir, false)?;
    let Seal::Shamir(current) = load_seal(&*store)? else {
        return Err(CliError::failed(
            "the root key is not sealed by shares: `keyward operator migrate-seal --to shamir`",
        ));
    };
    let root = shares_from_terminal(&current)?;
    kms_on(&store, &root, "shamir")?;
    let (seal, shares) = ShamirSeal::create(&root, split.shares, split.threshold)
        .map_err(|e| failed("splitting")(&e))?;
    Seal::Shamir(seal)
        .save(&*store)
        .map_err(|e| failed("saving the seal")(&e))?;
    print_shares(&shares, split)?;
    println!("keyward: the old shares no longer unseal; the data is unchanged");
    Ok(())
}

fn migrate(
    to: &str,
    split: &SplitArgs,
    hsm: &Pkcs11Args,
    dir: &DataDirArgs,
) -> Result<(), CliError> {
    if !["file", "shamir", "pkcs11"].contains(&to) {
        return Err(CliError::usage(format!(
            "invalid setting --to: {to:?}: use shamir, pkcs11 or file"
        )));
    }
    let (path, store) = open(dir, false)?;
    let key_file = path.join(ROOT_KEY_FILE);
    let current = load_seal(&*store)?;
    if current.provider() == to {
        return Err(CliError::failed(format!(
            "the root key is sealed by `{to}` already"
        )));
    }
    // The root key, from the seal it has now; opening the store with it proves it right.
    let root = match &current {
        Seal::File => read_key_file(&key_file).map_err(|e| failed("root key")(&e))?,
        Seal::Shamir(seal) => shares_from_terminal(seal)?,
        Seal::Pkcs11(seal) => seal
            .unseal(&hsm_access(hsm)?)
            .map_err(|e| failed("unsealing with the HSM")(&e))?,
    };
    let kms = Arc::new(kms_on(&store, &root, current.provider())?);
    let (seal, shares) = if to == "file" {
        crate::backup::write_root_key(&key_file, &root)?;
        (Seal::File, Vec::new())
    } else {
        if keyward_server::tls::kept_config(&path).is_err() {
            prepare_listener(&kms, &path, &[])?;
        }
        new_seal(to, &root, split, hsm)?
    };
    // The new seal first: until the old one is gone both open the store, never neither.
    seal.save(&*store)
        .map_err(|e| failed("saving the seal")(&e))?;
    match &current {
        Seal::File => destroy_key_file(&key_file)?,
        Seal::Shamir(_) => {}
        Seal::Pkcs11(old) => {
            if let Err(e) = old.destroy_key(&hsm_access(hsm)?) {
                eprintln!("keyward: the old wrapping key stays in the HSM: {e}");
            }
        }
    }
    if !shares.is_empty() {
        print_shares(&shares, split)?;
    }
    println!(
        "keyward: the root key moved from `{}` to `{to}`; the data is unchanged",
        current.provider()
    );
    Ok(())
}

/// Overwrites the root key file with zeros before removing it, so that its blocks do not
/// keep the key (on file systems that write in place).
fn destroy_key_file(path: &Path) -> Result<(), CliError> {
    let fail = |e: std::io::Error| CliError::failed(format!("removing {}: {e}", path.display()));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(fail)?;
    f.write_all(&[0u8; 32])
        .and_then(|()| f.sync_all())
        .map_err(fail)?;
    drop(f);
    fs::remove_file(path).map_err(fail)?;
    sync_parent(path)
}

fn sync_parent(path: &Path) -> Result<(), CliError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| CliError::failed(format!("syncing {}: {e}", dir.display())))
}

pub(crate) fn endpoint(args: &EndpointArgs) -> Result<Endpoint, CliError> {
    let (url, setting) = match &args.endpoint {
        Some(u) => (u.clone(), "--endpoint"),
        None => (
            env_endpoint().unwrap_or_else(|| "https://localhost:8443".into()),
            "AWS_ENDPOINT_URL_KMS",
        ),
    };
    let (bundle, bundle_setting) = match &args.ca {
        Some(p) => (p.display().to_string(), "--ca"),
        None => (env_bundle(), "AWS_CA_BUNDLE"),
    };
    let identity = crate::tls_scan_cli::client_identity(
        args.client_cert.as_deref(),
        args.client_key.as_deref(),
    )?;
    Endpoint::new(&url, setting, &bundle, bundle_setting, identity)
}

/// One unauthenticated request to the server: status and JSON body.
fn call(
    endpoint: &Endpoint,
    method: &str,
    path: &str,
    body: Option<Zeroizing<String>>,
) -> Result<(u16, Value), CliError> {
    let (status, text) = call_text(endpoint, method, path, body)?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// One unauthenticated request to the server: status and body.
pub(crate) fn call_text(
    endpoint: &Endpoint,
    method: &str,
    path: &str,
    body: Option<Zeroizing<String>>,
) -> Result<(u16, String), CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| failed("runtime")(&e))?;
    let bytes = body
        .map(|b| bytes::Bytes::from(b.as_bytes().to_vec()))
        .unwrap_or_default();
    let request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", endpoint.authority())
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes))
        .map_err(|e| failed("request")(&e))?;
    let (status, body) = runtime
        .block_on(crate::https::send(
            &endpoint.host,
            endpoint.port,
            endpoint.tls.clone(),
            request,
            std::time::Duration::from_secs(60),
        ))
        .map_err(|e| CliError::failed(format!("{}: {e}", endpoint.authority())))?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn show_status(v: &Value) {
    let sealed = v["sealed"].as_bool().unwrap_or(true);
    let provider = v["provider"].as_str().unwrap_or("?");
    if sealed {
        match (v["progress"].as_u64(), v["threshold"].as_u64()) {
            (Some(p), Some(t)) => println!("sealed (provider {provider}): {p} of {t} shares given"),
            _ => println!("sealed (provider {provider})"),
        }
    } else {
        println!("unsealed (provider {provider})");
    }
}

fn refused(status: u16, v: &Value) -> CliError {
    CliError::failed(format!(
        "refused ({status}): {}",
        v["message"].as_str().unwrap_or("no reason given")
    ))
}

fn status(args: &EndpointArgs) -> Result<(), CliError> {
    let (code, v) = call(&endpoint(args)?, "GET", "/v1/sys/seal-status", None)?;
    if code != 200 {
        return Err(refused(code, &v));
    }
    show_status(&v);
    // Exit 2 while sealed, as `vault status` does, so scripts can wait on it.
    if v["sealed"].as_bool().unwrap_or(true) {
        return Err(CliError::exit(2));
    }
    Ok(())
}

fn unseal(args: &EndpointArgs) -> Result<(), CliError> {
    let endpoint = endpoint(args)?;
    let share = if std::io::stdin().is_terminal() {
        Zeroizing::new(
            rpassword::prompt_password("Unseal share: ")
                .map_err(|e| failed("reading the share")(&e))?,
        )
    } else {
        let mut line = Zeroizing::new(String::new());
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| failed("reading the share")(&e))?;
        line
    };
    let body = if share.trim().is_empty() {
        // Providers that need no share (the file) unseal on an empty request.
        Zeroizing::new("{}".to_owned())
    } else {
        Zeroizing::new(json!({ "share": share.trim() }).to_string())
    };
    let (code, v) = call(&endpoint, "POST", "/v1/sys/unseal", Some(body))?;
    if code != 200 {
        return Err(refused(code, &v));
    }
    show_status(&v);
    Ok(())
}

fn seal(args: &EndpointArgs) -> Result<(), CliError> {
    let endpoint = endpoint(args)?;
    let region = std::env::var("AWS_REGION")
        .ok()
        .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "us-east-1".into());
    let client = HttpKms::with_endpoint(endpoint, region)?;
    let (code, body) = client
        .post_signed(
            "/v1/sys/seal",
            &[("content-type", "application/json")],
            "{}".into(),
        )
        .map_err(CliError::failed)?;
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if code != 200 {
        return Err(refused(code, &v));
    }
    show_status(&v);
    Ok(())
}
