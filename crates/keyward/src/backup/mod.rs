//! `keyward backup`, `keyward backup verify` and `keyward restore`: a consistent snapshot
//! of an instance in one file protected by a recovery secret, checked without restoring,
//! and rebuilt into a new instance on either backend (docs/OPERATIONS.md, "Backup and
//! restore").
//!
//! - [`format`]: the file (a header naming the KDF, an AWS Encryption SDK message).
//! - [`contents`]: the payload (the root key, the snapshot as JSON) and its checks.

use std::fs;
use std::io::{IsTerminal as _, Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use keyward_kms::{AesRootKey, Kms, KmsConfig, Passphrase, ROOT_CHECK, RootKey as _};
use keyward_store::{DatabaseUrl, Snapshot, StoreError};
use zeroize::Zeroizing;

use crate::files::CliError;
use crate::serve::{data_dir, database_url, failed, open_kms, open_store};

mod contents;
mod format;

use self::contents::Contents;
use self::format::{BackupError, Kdf, RecoverySecret};

/// Exit code when restore refuses a target that is not a new instance (sysexits
/// EX_CANTCREAT).
const EXIT_NOT_EMPTY: u8 = 73;
/// Where the recovery passphrase comes from when no terminal can be asked.
const PASSPHRASE_ENV: &str = "KEYWARD_RECOVERY_PASSPHRASE";
/// Meta entry a restored instance keeps: the audit chain of the backup it came from.
pub(crate) const RESTORED_FROM_META: &str = "audit.restored_from";

/// `keyward backup`: write a backup, or (`keyward backup verify FILE`) check one.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct BackupArgs {
    #[command(subcommand)]
    pub(crate) command: Option<BackupCommand>,
    #[command(flatten)]
    pub(crate) create: CreateArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum BackupCommand {
    /// Decrypt and check a backup without restoring it: its authenticity, its structure,
    /// and that its root key opens its records; prints what it holds. Exits 1 if it
    /// cannot be opened or does not hold together.
    Verify(VerifyArgs),
}

/// Where the recovery secret comes from: `--recovery-key FILE`, else the passphrase in
/// `KEYWARD_RECOVERY_PASSPHRASE`, else a prompt on the terminal (never a flag).
#[derive(Debug, Args)]
pub(crate) struct SecretArgs {
    /// A recovery key file (32 random bytes, raw or as 64 hex digits) instead of a
    /// recovery passphrase.
    #[arg(long, value_name = "FILE")]
    pub(crate) recovery_key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// Where to write the backup (mode 0600; written whole or not at all).
    #[arg(long, value_name = "FILE", required = true)]
    pub(crate) out: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) dir: crate::cli::DataDirArgs,
    #[command(flatten)]
    pub(crate) secret: SecretArgs,
    /// Make a new recovery key file (mode 0600; must not exist) and protect the backup
    /// with it.
    #[arg(long, value_name = "FILE", conflicts_with = "recovery_key")]
    pub(crate) new_recovery_key: Option<PathBuf>,
    /// Leave the root key out: restoring then needs `--root-key FILE`. By default the
    /// backup carries root.key, so that the backup and its recovery secret alone rebuild
    /// the instance.
    #[arg(long)]
    pub(crate) without_root_key: bool,
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The backup file.
    #[arg(value_name = "FILE")]
    pub(crate) file: PathBuf,
    #[command(flatten)]
    pub(crate) secret: SecretArgs,
    /// The root key file to check a backup made `--without-root-key` against.
    #[arg(long, value_name = "FILE")]
    pub(crate) root_key: Option<PathBuf>,
}

/// `keyward restore`: rebuild a new instance from a backup.
#[derive(Debug, Args)]
pub(crate) struct RestoreArgs {
    /// The backup file.
    #[arg(long, value_name = "FILE")]
    pub(crate) from: PathBuf,
    #[command(flatten)]
    pub(crate) dir: crate::cli::DataDirArgs,
    #[command(flatten)]
    pub(crate) secret: SecretArgs,
    /// The root key file, for a backup made `--without-root-key` (it then wins over none).
    #[arg(long, value_name = "FILE")]
    pub(crate) root_key: Option<PathBuf>,
    /// The audit directory the restored instance will serve with [default: DATA_DIR/audit].
    #[arg(long, value_name = "DIR")]
    pub(crate) audit_dir: Option<PathBuf>,
}

/// The one place backup errors become exit codes and messages.
fn cli_error(e: BackupError) -> CliError {
    CliError::failed(format!("backup: {e}"))
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The store entry with the time (Unix milliseconds) of the last backup written.
pub(crate) const LAST_BACKUP_META: &str = "last-backup-ms";

pub(crate) fn backup(args: &BackupArgs) -> Result<(), CliError> {
    match &args.command {
        Some(BackupCommand::Verify(v)) => verify(v),
        None => create(&args.create),
    }
}

/// The recovery passphrase: `KEYWARD_RECOVERY_PASSPHRASE`, else asked on the terminal
/// (twice when making a backup).
fn passphrase(confirm: bool) -> Result<Passphrase, CliError> {
    let bad = |why: &str| CliError::usage(format!("invalid setting {PASSPHRASE_ENV}: {why}"));
    if let Some(p) = std::env::var(PASSPHRASE_ENV).ok().filter(|v| !v.is_empty()) {
        return Passphrase::new(p).map_err(|_| bad("at least 12 characters"));
    }
    if is_ci() || !std::io::stdin().is_terminal() {
        return Err(bad(
            "not set, and there is no terminal to ask on (or pass --recovery-key FILE)",
        ));
    }
    let first =
        Passphrase::prompt("Recovery passphrase: ").map_err(|_| bad("at least 12 characters"))?;
    if confirm {
        let again = Passphrase::prompt("Recovery passphrase again: ")
            .map_err(|_| bad("at least 12 characters"))?;
        if aws_lc_rs::constant_time::verify_slices_are_equal(
            again.expose_secret().as_bytes(),
            first.expose_secret().as_bytes(),
        )
        .is_err()
        {
            return Err(bad("the two passphrases differ"));
        }
    }
    Ok(first)
}

/// A recovery key file: exactly 32 bytes, or 64 hex digits and optional white space.
fn read_recovery_key(path: &Path) -> Result<Zeroizing<[u8; 32]>, CliError> {
    let bad = |why: String| {
        CliError::usage(format!(
            "invalid setting --recovery-key {}: {why}",
            path.display()
        ))
    };
    // Sized up front: a growing buffer would leave copies of the key in freed memory.
    let mut text = Zeroizing::new(Vec::with_capacity(1025));
    fs::File::open(path)
        .and_then(|f| f.take(1024).read_to_end(&mut text))
        .map_err(|e| bad(e.to_string()))?;
    let mut key = Zeroizing::new([0u8; 32]);
    if text.len() == 32 {
        key.copy_from_slice(&text);
        return Ok(key);
    }
    let digits: Zeroizing<Vec<u8>> = Zeroizing::new(
        text.iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect(),
    );
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    if digits.len() != 64 {
        return Err(bad("must hold 32 bytes, raw or as 64 hex digits".into()));
    }
    for (i, pair) in digits.chunks(2).enumerate() {
        match (nibble(pair[0]), nibble(pair[1])) {
            (Some(h), Some(l)) => key[i] = h << 4 | l,
            _ => return Err(bad("must hold 32 bytes, raw or as 64 hex digits".into())),
        }
    }
    Ok(key)
}

/// Makes a new recovery key file (64 hex digits, mode 0600) at `path`, which must not
/// exist.
fn new_recovery_key(path: &Path) -> Result<Zeroizing<[u8; 32]>, CliError> {
    let key = keyward_envelope::WrappingKey::generate()
        .map_err(|_| CliError::failed("random number generator failed"))?;
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = Zeroizing::new(String::with_capacity(65));
    for b in key.expose_secret() {
        text.push(char::from(DIGITS[usize::from(b >> 4)]));
        text.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    text.push('\n');
    let fail = |e: std::io::Error| {
        CliError::usage(format!(
            "invalid setting --new-recovery-key {}: {e}",
            path.display()
        ))
    };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(fail)?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(fail)?;
    eprintln!(
        "keyward: wrote a new recovery key to {}: keep it apart from the backups",
        path.display()
    );
    Ok(Zeroizing::new(*key.expose_secret()))
}

/// The secret a backup with this header needs.
fn secret_for(kdf: &Kdf, args: &SecretArgs) -> Result<RecoverySecret, CliError> {
    match (&args.recovery_key, kdf.needs_passphrase()) {
        (Some(path), false) => Ok(RecoverySecret::Key(read_recovery_key(path)?)),
        (None, false) => Err(CliError::usage(
            "invalid setting --recovery-key: this backup is protected by a recovery key file; pass it with --recovery-key FILE",
        )),
        (Some(_), true) => Err(CliError::usage(format!(
            "invalid setting --recovery-key: this backup is protected by a recovery passphrase ({PASSPHRASE_ENV} or the prompt), not a key file"
        ))),
        (None, true) => Ok(RecoverySecret::Passphrase(passphrase(false)?)),
    }
}

/// A root key file's 32 bytes.
fn read_root_key(path: &Path) -> Result<Zeroizing<[u8; 32]>, String> {
    // Sized up front: a growing buffer would leave copies of the key in freed memory.
    let mut bytes = Zeroizing::new(Vec::with_capacity(34));
    fs::File::open(path)
        .and_then(|f| f.take(33).read_to_end(&mut bytes))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut key = Zeroizing::new([0u8; 32]);
    if bytes.len() != 32 {
        return Err(format!(
            "{}: a root key file holds exactly 32 bytes",
            path.display()
        ));
    }
    key.copy_from_slice(&bytes);
    Ok(key)
}

/// A backup file's bytes, bounded.
fn read_backup(path: &Path, setting: &str) -> Result<Vec<u8>, CliError> {
    let bad = |e: std::io::Error| {
        CliError::usage(format!("invalid setting {setting} {}: {e}", path.display()))
    };
    let f = fs::File::open(path).map_err(bad)?;
    let mut bytes = Vec::new();
    f.take(format::MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(bad)?;
    if bytes.len() as u64 > format::MAX_FILE {
        return Err(cli_error(BackupError::TooLarge));
    }
    Ok(bytes)
}

/// Checks that `key` opens the snapshot's root-key check value and the first key
/// version; says what it checked.
fn check_root_key(key: &[u8; 32], snapshot: &Snapshot) -> Result<String, BackupError> {
    let root =
        AesRootKey::new(key, "file").map_err(|_| BackupError::Crypto("root key setup failed"))?;
    let mut checked = Vec::new();
    if let Some((_, value)) = snapshot.meta.iter().find(|(n, _)| n == ROOT_CHECK) {
        root.unwrap(value, ROOT_CHECK.as_bytes())
            .map_err(|_| BackupError::RootKeyMismatch)?;
        checked.push("the root-key check".to_owned());
    }
    if let Some(v) = snapshot.versions.first() {
        root.unwrap(&v.wrapped, &Kms::wrap_context(&v.key_id, v.version))
            .map_err(|_| BackupError::RootKeyMismatch)?;
        checked.push(format!("key {} version {}", v.key_id, v.version));
    }
    if checked.is_empty() {
        return Ok("nothing to check it against (an empty instance)".into());
    }
    Ok(format!("opens {}", checked.join(" and ")))
}

/// What a backup holds, for people.
fn describe(c: &Contents) -> String {
    let s = &c.snapshot;
    let live = s.keys.iter().filter(|k| !k.destroyed).count();
    let audit = match (&s.audit_tail, &s.audit_checkpoint) {
        (None, _) => "no audit records".to_owned(),
        (Some(t), None) => format!("audit log at record {}, no checkpoint", t.seq),
        (Some(t), Some(cp)) => format!(
            "audit log at record {}, last checkpoint at record {}",
            t.seq, cp.seq
        ),
    };
    format!(
        "taken {} by keyward {}\n{} keys ({live} not destroyed), {} key versions, {} aliases, {} tags\n\
         {} access keys, {} certificates, {} settings and sealed secrets\n{audit}\nroot key: {}",
        crate::audit_cli::format_time(c.created_ms),
        c.keyward_version,
        s.keys.len(),
        s.versions.len(),
        s.aliases.len(),
        s.tags.len(),
        s.access_keys.len(),
        s.certificates.len(),
        s.meta.len(),
        if c.root_key.is_some() {
            "in the backup"
        } else {
            "not in the backup (made --without-root-key)"
        }
    )
}

fn create(args: &CreateArgs) -> Result<(), CliError> {
    let out = args
        .out
        .as_deref()
        .ok_or_else(|| CliError::usage("invalid setting --out: required"))?;
    let dir = data_dir(args.dir.data_dir.as_deref()).ok_or_else(|| {
        CliError::usage("invalid setting data_dir: set --data-dir or KEYWARD_DATA_DIR")
    })?;
    let database = database_url(args.dir.database_url.as_deref())?;
    if database.is_none() && !dir.join("keyward.db").exists() {
        return Err(CliError::usage(format!(
            "invalid setting data_dir: {} holds no keyward database",
            dir.display()
        )));
    }
    let root_path = dir.join("root.key");
    // A root key sealed by shares or an HSM is not in a file: the backup carries the seal
    // (in the snapshot) instead, and the same shares or token open what it restores.
    let sealed = {
        let store = open_store(&dir, database.as_ref())?;
        let seal =
            keyward_kms::seal::Seal::load(&*store).map_err(|e| failed("reading the seal")(&e))?;
        (!matches!(seal, keyward_kms::seal::Seal::File)).then(|| seal.provider())
    };
    let without_root_key = args.without_root_key || sealed.is_some();
    if let Some(provider) = sealed
        && !args.without_root_key
    {
        eprintln!(
            "keyward: the root key is sealed by `{provider}`: the backup holds the seal, not the root key"
        );
    }
    if !without_root_key && !root_path.exists() {
        return Err(CliError::usage(format!(
            "invalid setting data_dir: no root.key in {} (pass --without-root-key if it is kept elsewhere)",
            dir.display()
        )));
    }
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.is_dir()
    {
        return Err(CliError::usage(format!(
            "invalid setting --out: {} is not a directory",
            parent.display()
        )));
    }
    let secret = match (&args.secret.recovery_key, &args.new_recovery_key) {
        (Some(path), _) => RecoverySecret::Key(read_recovery_key(path)?),
        (None, Some(path)) => RecoverySecret::Key(new_recovery_key(path)?),
        (None, None) => RecoverySecret::Passphrase(passphrase(true)?),
    };
    let root_key = if without_root_key {
        None
    } else {
        Some(read_root_key(&root_path).map_err(|e| failed("root key")(&e))?)
    };
    let store = open_store(&dir, database.as_ref())?;
    let snapshot = store
        .snapshot()
        .map_err(|e| failed("reading the database")(&e))?;
    if let Some(key) = &root_key {
        check_root_key(key, &snapshot).map_err(|_| {
            failed("root key")(
                &"root.key does not open this database's records: is it this instance's?",
            )
        })?;
    }
    let contents = Contents {
        root_key,
        created_ms: now_ms(),
        keyward_version: env!("CARGO_PKG_VERSION").to_owned(),
        snapshot,
    };
    let payload = contents::encode(&contents).map_err(cli_error)?;
    let kdf = secret.new_kdf().map_err(cli_error)?;
    let file = format::seal(&payload.bytes, &kdf, &secret).map_err(cli_error)?;
    crate::files::write_atomic(out, &file, 0o600)?;
    // For `keyward doctor`: when the last backup was made (not part of the snapshot).
    store
        .set_meta(LAST_BACKUP_META, contents.created_ms.to_string().as_bytes())
        .map_err(|e| failed("recording the backup")(&e))?;
    println!("keyward: wrote {} ({} bytes)", out.display(), file.len());
    println!("{}", describe(&contents));
    Ok(())
}

/// Reads, decrypts and checks a backup.
fn open_backup(path: &Path, setting: &str, secret: &SecretArgs) -> Result<Contents, CliError> {
    let bytes = read_backup(path, setting)?;
    let (kdf, _) = Kdf::parse(&bytes).map_err(cli_error)?;
    let secret = secret_for(&kdf, secret)?;
    let payload = format::open(&bytes, &secret).map_err(cli_error)?;
    contents::decode(&payload).map_err(cli_error)
}

fn verify(args: &VerifyArgs) -> Result<(), CliError> {
    let given = args
        .root_key
        .as_deref()
        .map(read_root_key)
        .transpose()
        .map_err(|e| CliError::usage(format!("invalid setting --root-key {e}")))?;
    let contents = open_backup(&args.file, "FILE", &args.secret)?;
    println!("{}: authentic and complete", args.file.display());
    println!("{}", describe(&contents));
    match given.as_ref().or(contents.root_key.as_ref()) {
        Some(key) => {
            let checked = check_root_key(key, &contents.snapshot).map_err(cli_error)?;
            println!("root key: {checked}");
        }
        None => println!("root key: not checked (pass --root-key FILE)"),
    }
    Ok(())
}

fn refuse(dir: &Path, why: &str) -> CliError {
    CliError::with_code(
        EXIT_NOT_EMPTY,
        format!(
            "refusing to restore into {}: {why}; a backup is restored only into a new instance (nothing was changed)",
            dir.display()
        ),
    )
}

/// Refuses a target that is not a new instance, before anything is written.
fn check_target(
    dir: &Path,
    audit_dir: &Path,
    database: Option<&DatabaseUrl>,
) -> Result<(), CliError> {
    if dir.join("root.key").exists() {
        return Err(refuse(dir, "it holds a root.key"));
    }
    if audit_dir.join(keyward_audit::sink::RECORDS).exists() {
        return Err(refuse(dir, "its audit directory holds a log"));
    }
    if database.is_some() || dir.join("keyward.db").exists() {
        let store = open_store(dir, database)?;
        if !store
            .is_empty()
            .map_err(|e| failed("reading the database")(&e))?
        {
            return Err(refuse(dir, "its database holds records"));
        }
    }
    Ok(())
}

/// Writes the root key to a new file (mode 0600) and syncs it and its directory. The key
/// is written to a temporary file first and linked into place, so that a crash leaves
/// either no root.key or a whole one, and an existing one is never replaced.
pub(crate) fn write_root_key(path: &Path, key: &[u8; 32]) -> Result<(), CliError> {
    let fail = |e: &dyn std::fmt::Display| failed(&format!("writing {}", path.display()))(e);
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".root.key.")
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(|e| fail(&e))?;
    tmp.as_file()
        .write_all(key)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| fail(&e))?;
    match fs::hard_link(tmp.path(), path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(refuse(dir, "it holds a root.key"));
        }
        Err(e) => return Err(fail(&e)),
    }
    drop(tmp); // removes the temporary name; root.key keeps the data
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| fail(&e))
}

pub(crate) fn restore(args: &RestoreArgs) -> Result<(), CliError> {
    let dir = data_dir(args.dir.data_dir.as_deref()).ok_or_else(|| {
        CliError::usage("invalid setting data_dir: set --data-dir or KEYWARD_DATA_DIR")
    })?;
    let database = database_url(args.dir.database_url.as_deref())?;
    let audit_dir = args
        .audit_dir
        .clone()
        .unwrap_or_else(|| dir.join(keyward_server::audit::DEFAULT_DIR));
    let given = args
        .root_key
        .as_deref()
        .map(read_root_key)
        .transpose()
        .map_err(|e| CliError::usage(format!("invalid setting --root-key {e}")))?;
    let mut contents = open_backup(&args.from, "--from", &args.secret)?;
    // A backup of an instance sealed by shares or an HSM holds the seal: the same shares
    // or token give the root key, and the restored instance is sealed the same way.
    let seal = keyward_kms::seal::Seal::parse(
        contents
            .snapshot
            .meta
            .iter()
            .find(|(n, _)| n == keyward_kms::seal::SEAL_META)
            .map(|(_, v)| &v[..]),
    )
    .map_err(|e| failed("the backup's seal")(&e))?;
    let sealed = !matches!(seal, keyward_kms::seal::Seal::File);
    let root_key = match given.or_else(|| contents.root_key.clone()) {
        Some(k) => k,
        None if sealed => {
            check_target(&dir, &audit_dir, database.as_ref())?;
            crate::serve::sealed_root(&seal)?.ok_or_else(|| CliError::failed("no root key"))?
        }
        None => {
            return Err(CliError::usage(
                "invalid setting --root-key: this backup was made --without-root-key; pass the instance's root.key with --root-key FILE",
            ));
        }
    };
    check_root_key(&root_key, &contents.snapshot).map_err(cli_error)?;
    check_target(&dir, &audit_dir, database.as_ref())?;

    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| failed("cannot create the data directory")(&e))?;
    let store = open_store(&dir, database.as_ref())?;
    let root_path = dir.join("root.key");
    if !sealed {
        write_root_key(&root_path, &root_key)?;
    }
    let mut snapshot = std::mem::take(&mut contents.snapshot);
    // A backup of a restored instance carries the entry of that restore: this one
    // replaces it.
    snapshot.meta.retain(|(name, _)| name != RESTORED_FROM_META);
    snapshot.meta.push((
        RESTORED_FROM_META.to_owned(),
        restored_from(&contents, &snapshot),
    ));
    if let Err(e) = store.restore(&snapshot) {
        // Ours: made above with create_new.
        let _ = fs::remove_file(&root_path);
        return Err(match e {
            StoreError::NotEmpty => refuse(&dir, "its database holds records"),
            e => failed("restoring the records")(&e),
        });
    }
    drop(store);
    let kms = std::sync::Arc::new(if sealed {
        keyward_kms::Kms::open(
            open_store(&dir, database.as_ref())?,
            Box::new(
                AesRootKey::new(&root_key, seal.provider()).map_err(|e| failed("root key")(&e))?,
            ),
            std::sync::Arc::new(keyward_kms::SystemClock),
            KmsConfig::default(),
        )
        .map_err(|e| failed("opening the KMS")(&e))?
    } else {
        open_kms(&dir, database.as_ref(), KmsConfig::default())?
    });
    if sealed {
        // It starts sealed: it needs a listener certificate of its own before any unseal.
        crate::operator::prepare_listener(&kms, &dir, &[])?;
    }
    let first = start_chain(&kms, &audit_dir, &snapshot, contents.created_ms)?;
    let admin = write_admin_env(&kms, &dir, &snapshot)?;
    contents.snapshot = snapshot;
    println!(
        "keyward: restored {} into {}",
        args.from.display(),
        dir.display()
    );
    if let Some(url) = &database {
        println!("keyward: database {url}");
    }
    println!("{}", describe(&contents));
    println!(
        "audit: a new chain began with record {first} (Restore), naming the backup's last record and checkpoint"
    );
    if let Some(id) = admin {
        println!(
            "keyward: wrote {} (mode 0600) for the administrator's access key {id}",
            dir.join("admin.env").display()
        );
    }
    println!(
        "keyward: start it with `keyward serve --data-dir {}`{}",
        dir.display(),
        if database.is_some() {
            " and the same database URL"
        } else {
            ""
        }
    );
    Ok(())
}

/// A place in an audit chain: a record's sequence number and hash.
type ChainPoint = Option<(u64, String)>;

/// Writes `admin.env` again, as the first start had, for the oldest access key of the
/// principal `admin` (its secret unsealed with the restored root key). Returns its id.
fn write_admin_env(kms: &Kms, dir: &Path, snapshot: &Snapshot) -> Result<Option<String>, CliError> {
    let Some(admin) = snapshot
        .access_keys
        .iter()
        .filter(|k| k.principal == "admin")
        .min_by_key(|k| (k.created_at, k.access_key_id.clone()))
    else {
        return Ok(None);
    };
    let Some((secret, _)) = keyward_server::access::lookup(kms, &admin.access_key_id)
        .map_err(|e| failed("the administrator's access key")(&e))?
    else {
        return Ok(None);
    };
    let text = Zeroizing::new(format!(
        "export AWS_ACCESS_KEY_ID={}\nexport AWS_SECRET_ACCESS_KEY={}\n",
        admin.access_key_id, &*secret
    ));
    crate::files::write_atomic(&dir.join("admin.env"), text.as_bytes(), 0o600)?;
    Ok(Some(admin.access_key_id.clone()))
}

/// The old chain's end as the backup saw it: its last record, its last checkpoint.
fn previous_chain(snapshot: &Snapshot) -> (ChainPoint, ChainPoint) {
    let tail = snapshot.audit_tail.as_ref().map(|r| {
        let hash = serde_json::from_str::<keyward_audit::Record>(&r.line)
            .map(|rec| rec.hash)
            .unwrap_or_default();
        (r.seq, hash)
    });
    let checkpoint = snapshot.audit_checkpoint.as_ref().map(|r| {
        let hash = serde_json::from_str::<keyward_audit::Checkpoint>(&r.line)
            .map(|c| c.hash)
            .unwrap_or_default();
        (r.seq, hash)
    });
    (tail, checkpoint)
}

/// The `audit.restored_from` value: where the backup's chain ended, and its last
/// checkpoint as signed.
fn restored_from(contents: &Contents, snapshot: &Snapshot) -> Vec<u8> {
    let (tail, checkpoint) = previous_chain(snapshot);
    serde_json::json!({
        "backup_created_ms": contents.created_ms,
        "backup_keyward_version": contents.keyward_version,
        "restored_ms": now_ms(),
        "previous_tail": tail.map(|(seq, hash)| serde_json::json!({"seq": seq, "hash": hash})),
        "previous_checkpoint": snapshot.audit_checkpoint.as_ref().map(|c| c.line.clone()),
        "previous_checkpoint_seq": checkpoint.map(|(seq, _)| seq),
    })
    .to_string()
    .into_bytes()
}

/// Starts the restored instance's audit chain with one `Restore` record that names the
/// backup's last record and checkpoint, and signs a checkpoint after it. Returns its
/// sequence number.
fn start_chain(
    kms: &Kms,
    audit_dir: &Path,
    snapshot: &Snapshot,
    created_ms: i64,
) -> Result<u64, CliError> {
    let settings = keyward_server::audit::AuditSettings {
        dir: audit_dir.to_owned(),
        every: keyward_server::audit::DEFAULT_EVERY,
        sync: keyward_audit::sink::SyncPolicy::EveryBatch,
    };
    let auditor = keyward_server::audit::Auditor::start(kms, &settings)
        .map_err(|e| failed("audit log")(&e))?;
    let (tail, checkpoint) = previous_chain(snapshot);
    let mut context = std::collections::BTreeMap::new();
    context.insert("backup_created_ms".to_owned(), created_ms.to_string());
    if let Some((seq, hash)) = tail {
        context.insert("previous_tail_seq".to_owned(), seq.to_string());
        context.insert("previous_tail_hash".to_owned(), hash);
    }
    if let Some((seq, hash)) = checkpoint {
        context.insert("previous_checkpoint_seq".to_owned(), seq.to_string());
        context.insert("previous_checkpoint_hash".to_owned(), hash);
    }
    let event = keyward_audit::Event {
        time_ms: now_ms(),
        request_id: format!("restore-{}", now_ms()),
        principal: Some("keyward-restore".to_owned()),
        source: "local".to_owned(),
        tls_identity: None,
        operation: "Restore".to_owned(),
        key_arn: None,
        key_version: None,
        outcome: keyward_audit::Outcome::Allowed,
        error_type: None,
        context,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| failed("starting the runtime")(&e))?;
    let seq = runtime
        .block_on(auditor.record(event))
        .map_err(|e| failed("audit log")(&e))?;
    if !auditor.checkpoint_blocking() {
        return Err(failed("audit log")(
            &"the first checkpoint could not be written",
        ));
    }
    Ok(seq)
}
