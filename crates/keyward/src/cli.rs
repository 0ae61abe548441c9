//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use keyward_envelope::{DEFAULT_FRAME_LENGTH, MAX_FRAME_LENGTH, Suite};

#[derive(Debug, Parser)]
#[command(
    name = "keyward",
    version,
    about = "Self-hosted key management and envelope encryption"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the key management service: the AWS KMS JSON API over TLS 1.3 with SigV4.
    ///
    /// The first start creates the data directory, a development root key, an internal CA
    /// and an administrator access key, and prints what a client needs.
    Serve(Box<ServeArgs>),
    /// Manage the access keys (SigV4 credentials) of the service in a data directory.
    #[command(subcommand, name = "access-key")]
    AccessKey(AccessKeyCommand),
    /// Manage KMS keys through the service's API, with the credentials and endpoint in the
    /// AWS environment variables `keyward serve` printed.
    #[command(subcommand)]
    Key(KeyCommand),
    /// The internal certificate authority of the service in a data directory.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Certificates from the internal CA: issue, sign, revoke, list; check and renew.
    #[command(subcommand)]
    Cert(CertCommand),
    /// The audit log: verify, export, query, report.
    #[command(subcommand)]
    Audit(crate::audit_cli::AuditCommand),
    /// Audit TLS endpoints.
    #[command(subcommand)]
    Tls(TlsCommand),
    /// The root key's seal: init with unseal shares, unseal, seal, status, rekey, and
    /// migration between seal providers.
    #[command(subcommand)]
    Operator(OperatorCommand),
    /// Check a running deployment against the production checklist: the root key's
    /// seal, TLS 1.3 only, certificates far from expiry, the audit log on and verifying,
    /// rotation on every customer key, a recent backup. Exits 1 if an item fails.
    Doctor(DoctorArgs),
    /// Write a consistent backup of the instance (keys, versions, policies, aliases, tags,
    /// access keys, the CA, the audit keys and checkpoint, and root.key) to one file
    /// protected by a recovery passphrase or recovery key; `keyward backup verify FILE`
    /// checks one.
    Backup(crate::backup::BackupArgs),
    /// Rebuild a new instance (SQLite in the data directory, or an empty PostgreSQL
    /// database) from a backup. Refuses (exit 73) a target that holds anything.
    Restore(crate::backup::RestoreArgs),
    /// Write a new random 256-bit wrapping key to a file (mode 0600).
    Keygen(KeygenArgs),
    /// Encrypt a file or stream into an AWS Encryption SDK message.
    Encrypt(EncryptArgs),
    /// Decrypt an AWS Encryption SDK message.
    ///
    /// To a file, the output appears only after the whole message, signature included, has
    /// been verified. To standard output (`--out -`), each frame is written as soon as it
    /// authenticates: if decryption then fails, keyward exits non-zero and what was
    /// written must be discarded.
    Decrypt(DecryptArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// A TOML configuration file (keys: data_dir, listen, region, account, partition,
    /// hostnames, client_auth, server_cert_ttl, tls_cert, tls_key, rate_limit, audit_dir,
    /// audit_checkpoint_records, audit_checkpoint_interval).
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Where keyward keeps its database, root key and CA [env: KEYWARD_DATA_DIR]
    /// [default: $XDG_DATA_HOME/keyward or ~/.local/share/keyward].
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// A PostgreSQL database to keep keys, aliases, certificates and the audit log in,
    /// instead of SQLite in the data directory: postgres://USER:PASSWORD@HOST:PORT/DB
    /// [env: KEYWARD_DATABASE_URL, which keeps the password out of `ps`]. The root key
    /// stays in the data directory.
    #[arg(long, value_name = "URL")]
    pub(crate) database_url: Option<crate::cli::SecretArg>,
    /// Address and port to listen on [env: KEYWARD_LISTEN] [default: 127.0.0.1:8443].
    #[arg(long, value_name = "ADDR:PORT")]
    pub(crate) listen: Option<String>,
    /// Region in the ARNs [env: KEYWARD_REGION] [default: us-east-1].
    #[arg(long)]
    pub(crate) region: Option<String>,
    /// 12-digit account id in the ARNs [env: KEYWARD_ACCOUNT] [default: 111122223333].
    #[arg(long)]
    pub(crate) account: Option<String>,
    /// Extra DNS names or IP addresses for the server certificate. Repeatable.
    #[arg(long = "hostname", value_name = "NAME")]
    pub(crate) hostnames: Vec<String>,
    /// Client certificates: off, optional or required [env: KEYWARD_CLIENT_AUTH]
    /// [default: optional]. A verified certificate's SPIFFE ID (else CN) is the principal
    /// of requests that carry no SigV4 signature.
    #[arg(long, value_name = "MODE")]
    pub(crate) client_auth: Option<String>,
    /// Lifetime of the server's own certificate, renewed at 2/3 of it, e.g. 24h, 2m
    /// [env: KEYWARD_SERVER_CERT_TTL] [default: 24h].
    #[arg(long, value_name = "DURATION")]
    pub(crate) server_cert_ttl: Option<String>,
    /// Serve this certificate chain (PEM, leaf first) instead of one from the internal CA;
    /// it is not renewed [env: KEYWARD_TLS_CERT]. Needs --tls-key.
    #[arg(long, value_name = "FILE")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The private key (PEM) for --tls-cert [env: KEYWARD_TLS_KEY].
    #[arg(long, value_name = "FILE")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Requests per second each principal may make, in bursts of up to twice as many;
    /// beyond it, ThrottlingException. 0 for no limit [env: KEYWARD_RATE_LIMIT]
    /// [default: 0].
    #[arg(long, value_name = "N")]
    pub(crate) rate_limit: Option<String>,
    /// Where the audit log's JSON-lines copy is kept (audit.jsonl, checkpoints.jsonl)
    /// [env: KEYWARD_AUDIT_DIR] [default: DATA_DIR/audit]. The other copy is in the
    /// database; a request is answered only once its record is durable in both.
    #[arg(long, value_name = "DIR")]
    pub(crate) audit_dir: Option<PathBuf>,
    /// Sign an audit checkpoint every N records [env: KEYWARD_AUDIT_CHECKPOINT_RECORDS]
    /// [default: 10000] ...
    #[arg(long, value_name = "N")]
    pub(crate) audit_checkpoint_records: Option<String>,
    /// ... or after this long, e.g. 60s, 5m [env: KEYWARD_AUDIT_CHECKPOINT_INTERVAL]
    /// [default: 60s], whichever comes first.
    #[arg(long, value_name = "DURATION")]
    pub(crate) audit_checkpoint_interval: Option<String>,
    /// When audit records reach the disk: `batch` (fsync before each answer: a record
    /// survives a power loss) or `interval` (written before each answer, so it survives
    /// the process being killed; fsynced within 10 ms: a power loss may lose the last
    /// 10 ms of records) [env: KEYWARD_AUDIT_SYNC] [default: batch].
    #[arg(long, value_name = "MODE")]
    pub(crate) audit_sync: Option<String>,
    /// With the root key sealed by an HSM: its PKCS#11 module
    /// [env: KEYWARD_PKCS11_MODULE].
    #[arg(long, value_name = "FILE")]
    pub(crate) pkcs11_module: Option<PathBuf>,
    /// ... and a file whose first line is the token's user PIN
    /// [env: KEYWARD_PKCS11_PIN_FILE].
    #[arg(long, value_name = "FILE")]
    pub(crate) pkcs11_pin_file: Option<PathBuf>,
}

/// A flag's value that may hold a secret (a database URL with its password): kept as
/// given, left out of `Debug`.
#[derive(Clone)]
pub(crate) struct SecretArg(String);

impl std::str::FromStr for SecretArg {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl std::ops::Deref for SecretArg {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretArg(..)")
    }
}

/// Parses a lifetime such as `90s`, `2m`, `24h` or `30d`.
pub(crate) fn parse_ttl(s: &str) -> Result<time::Duration, String> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s, 2m, 24h or 30d"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?} is not a duration like 90s, 2m, 24h or 30d")),
    };
    if n <= 0 || n > 100 * 365 * 86_400 / seconds {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(time::Duration::seconds(n * seconds))
}

#[derive(Debug, Subcommand)]
pub(crate) enum AccessKeyCommand {
    /// Make an access key for a principal; its secret is shown once.
    Create {
        /// The principal requests signed with the key act as.
        #[arg(long)]
        principal: String,
        #[command(flatten)]
        dir: DataDirArgs,
    },
    /// List access key ids and their principals (never secrets).
    List {
        #[command(flatten)]
        dir: DataDirArgs,
    },
    /// Delete an access key; requests signed with it are refused at once.
    Delete {
        /// The access key id.
        access_key_id: String,
        #[command(flatten)]
        dir: DataDirArgs,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeyCommand {
    /// Create a symmetric key, optionally with an alias.
    Create {
        /// Free text.
        #[arg(long, default_value = "")]
        description: String,
        /// An alias for the new key (alias/...).
        #[arg(long)]
        alias: Option<String>,
        /// A key policy document (JSON) for the new key.
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
    },
    /// List keys.
    List,
    /// Describe a key (id, ARN or alias).
    Describe { key: String },
    /// Point an alias at a key, creating the alias if needed.
    Alias { alias: String, key: String },
    /// Rotate a key's material now.
    Rotate { key: String },
    /// Enable a key.
    Enable { key: String },
    /// Disable a key: it stops working at once.
    Disable { key: String },
    /// Schedule a key's destruction after 7 to 30 days.
    ScheduleDeletion {
        key: String,
        #[arg(long, default_value_t = 30)]
        days: u32,
    },
    /// Cancel a scheduled destruction; the key comes back disabled.
    CancelDeletion { key: String },
}

/// The data directory of a local service.
#[derive(Debug, Args)]
pub(crate) struct DataDirArgs {
    /// The service's data directory [env: KEYWARD_DATA_DIR]
    /// [default: $XDG_DATA_HOME/keyward or ~/.local/share/keyward].
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// A PostgreSQL database to keep keys, aliases, certificates and the audit log in,
    /// instead of SQLite in the data directory: postgres://USER:PASSWORD@HOST:PORT/DB
    /// [env: KEYWARD_DATABASE_URL, which keeps the password out of `ps`]. The root key
    /// stays in the data directory.
    #[arg(long, value_name = "URL")]
    pub(crate) database_url: Option<crate::cli::SecretArg>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum OperatorCommand {
    /// Seal a new instance's root key with unseal shares. Makes the root key, a key that
    /// wraps it split into SHARES shares of which THRESHOLD unseal (each shown once), the
    /// CA, the listener's certificate and the administrator's access key. `keyward serve`
    /// then starts sealed.
    Init {
        /// `shamir` (unseal shares) or `pkcs11` (a key in an HSM; the server unseals
        /// itself at start).
        #[arg(long, default_value = "shamir", value_name = "PROVIDER")]
        provider: String,
        #[command(flatten)]
        split: SplitArgs,
        #[command(flatten)]
        hsm: Pkcs11Args,
        /// More DNS names or IP addresses for the listener's certificate (as `keyward
        /// serve --hostname`; localhost, 127.0.0.1 and ::1 are always there).
        #[arg(long = "hostname", value_name = "NAME")]
        hostnames: Vec<String>,
        #[command(flatten)]
        dir: DataDirArgs,
    },
    /// Give one unseal share to a running, sealed server: asked for without echo on a
    /// terminal, else the first line of standard input (never a command-line argument).
    Unseal {
        #[command(flatten)]
        endpoint: EndpointArgs,
    },
    /// Seal a running server at once: its root key and every unwrapped key leave its
    /// memory. Signed with the operator's access key (AWS_ACCESS_KEY_ID and
    /// AWS_SECRET_ACCESS_KEY).
    Seal {
        #[command(flatten)]
        endpoint: EndpointArgs,
    },
    /// Show a running server's seal status.
    Status {
        #[command(flatten)]
        endpoint: EndpointArgs,
    },
    /// Make new unseal shares from THRESHOLD current ones (asked for on the terminal, or
    /// read from standard input, one per line). The root key and the data stay as they
    /// are; the old shares stop working.
    Rekey {
        #[command(flatten)]
        split: SplitArgs,
        #[command(flatten)]
        dir: DataDirArgs,
    },
    /// Move the root key to another seal provider without touching the data: from the
    /// development file to unseal shares, or back. Run it with the server stopped.
    MigrateSeal {
        /// The provider to move to: `shamir`, `pkcs11` or `file`.
        #[arg(long, value_name = "PROVIDER")]
        to: String,
        #[command(flatten)]
        split: SplitArgs,
        #[command(flatten)]
        hsm: Pkcs11Args,
        #[command(flatten)]
        dir: DataDirArgs,
    },
}

/// The HSM of the `pkcs11` provider. A data directory sealed by one is opened with
/// these (or KEYWARD_PKCS11_MODULE and KEYWARD_PKCS11_PIN_FILE).
#[derive(Debug, Args)]
pub(crate) struct Pkcs11Args {
    /// The PKCS#11 module [env: KEYWARD_PKCS11_MODULE].
    #[arg(long, value_name = "FILE")]
    pub(crate) pkcs11_module: Option<PathBuf>,
    /// A file whose first line is the token's user PIN [env: KEYWARD_PKCS11_PIN_FILE].
    #[arg(long, value_name = "FILE")]
    pub(crate) pkcs11_pin_file: Option<PathBuf>,
    /// The token's label.
    #[arg(long, value_name = "LABEL", default_value = "keyward")]
    pub(crate) pkcs11_token: String,
    /// The label of the wrapping key keyward makes in the token.
    #[arg(long, value_name = "LABEL", default_value = "keyward-root")]
    pub(crate) pkcs11_key_label: String,
}

#[derive(Debug, Args)]
pub(crate) struct DoctorArgs {
    #[command(flatten)]
    pub(crate) endpoint: EndpointArgs,
    #[command(flatten)]
    pub(crate) dir: DataDirArgs,
    /// The oldest a last backup may be.
    #[arg(long, value_name = "HOURS", default_value_t = 24)]
    pub(crate) backup_max_age_hours: u64,
}

/// How many unseal shares, and how many of them unseal.
#[derive(Debug, Args)]
pub(crate) struct SplitArgs {
    /// Shares to make (1 to 255).
    #[arg(long, default_value_t = 5)]
    pub(crate) shares: u8,
    /// Shares needed to unseal (at least 2 unless there is one share).
    #[arg(long, default_value_t = 3)]
    pub(crate) threshold: u8,
    /// Encrypt each share to its holder's age public key (`age1...`), given once per
    /// share in share order: share N is printed as an ASCII-armoured age message only
    /// its holder can open (`age -d -i KEY`).
    #[arg(long = "recipient", value_name = "AGE_PUBLIC_KEY")]
    pub(crate) recipients: Vec<String>,
}

/// A running server.
#[derive(Debug, Args)]
pub(crate) struct EndpointArgs {
    /// The server [env: AWS_ENDPOINT_URL_KMS, else AWS_ENDPOINT_URL]
    /// [default: https://localhost:8443].
    #[arg(long, value_name = "URL")]
    pub(crate) endpoint: Option<String>,
    /// The CA certificate to trust for it (its data directory's ca.pem)
    /// [env: AWS_CA_BUNDLE].
    #[arg(long, value_name = "FILE")]
    pub(crate) ca: Option<PathBuf>,
    /// A client certificate (PEM chain) for a server that requires one...
    #[arg(long, value_name = "FILE", requires = "client_key")]
    pub(crate) client_cert: Option<PathBuf>,
    /// ... and its key (PEM).
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    pub(crate) client_key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct KeygenArgs {
    /// Where to write the key; must not exist yet.
    #[arg(long, value_name = "FILE")]
    pub(crate) out: PathBuf,
}

/// Which wrapping keys to use; shared by encrypt and decrypt.
#[derive(Debug, Args)]
pub(crate) struct KeyArgs {
    /// A raw 256-bit wrapping key file (from `keyward keygen`). Repeat to wrap the data key
    /// under several keys; any one of them then decrypts.
    #[arg(
        long = "key-file",
        value_name = "FILE",
        required_unless_present = "kms_keys"
    )]
    pub(crate) key_files: Vec<PathBuf>,
    /// A KMS key (keyward's or any AWS KMS) to generate and wrap the data key: an id, ARN or
    /// alias to encrypt, the key ARN to decrypt. The endpoint and credentials come from the
    /// AWS environment variables (AWS_ENDPOINT_URL_KMS, AWS_CA_BUNDLE, AWS_ACCESS_KEY_ID, ...).
    /// Repeatable; may be combined with --key-file.
    #[arg(long = "kms-key", value_name = "KEY")]
    pub(crate) kms_keys: Vec<String>,
    /// Key namespace recorded in the message (the raw AES keyring's provider id).
    #[arg(long, default_value = "keyward", value_name = "NAMESPACE")]
    pub(crate) key_namespace: String,
    /// Key name recorded in the message.
    #[arg(long, default_value = "default", value_name = "NAME")]
    pub(crate) key_name: String,
}

/// Where data comes from and goes; shared by encrypt and decrypt.
#[derive(Debug, Args)]
pub(crate) struct IoArgs {
    /// Input file, or `-` for standard input.
    #[arg(long = "in", default_value = "-", value_name = "FILE")]
    pub(crate) input: PathBuf,
    /// Output file, or `-` for standard output.
    #[arg(long = "out", default_value = "-", value_name = "FILE")]
    pub(crate) output: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct EncryptArgs {
    #[command(flatten)]
    pub(crate) keys: KeyArgs,
    #[command(flatten)]
    pub(crate) io: IoArgs,
    /// An encryption context pair bound to the message. Repeatable.
    #[arg(long = "context", value_name = "KEY=VALUE", value_parser = parse_pair)]
    pub(crate) context: Vec<(String, String)>,
    /// Algorithm suite: 0x0478 (AES-256-GCM, HKDF-SHA512, key commitment) or 0x0578
    /// (the same plus an ECDSA P-384 signature).
    #[arg(long, default_value = "0x0478", value_parser = parse_suite)]
    pub(crate) suite: Suite,
    /// Plaintext bytes per frame.
    #[arg(long, default_value_t = DEFAULT_FRAME_LENGTH,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_FRAME_LENGTH)))]
    pub(crate) frame_length: u32,
    /// Worker threads for encryption; 0 means one per core.
    #[arg(long, default_value_t = 0)]
    pub(crate) threads: usize,
}

#[derive(Debug, Args)]
pub(crate) struct DecryptArgs {
    #[command(flatten)]
    pub(crate) keys: KeyArgs,
    #[command(flatten)]
    pub(crate) io: IoArgs,
    /// A pair the message's encryption context must contain. Repeatable.
    #[arg(long = "require-context", value_name = "KEY=VALUE", value_parser = parse_pair)]
    pub(crate) require_context: Vec<(String, String)>,
    /// Refuse messages with more encrypted data keys than this.
    #[arg(long, default_value_t = 16)]
    pub(crate) max_encrypted_data_keys: usize,
    /// Refuse messages whose frames are longer than this (it bounds memory use).
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    pub(crate) max_frame_length: u32,
    /// Worker threads for decryption; 0 means one per core.
    #[arg(long, default_value_t = 0)]
    pub(crate) threads: usize,
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!(
            "expected KEY=VALUE with a non-empty key, got {s:?}"
        )),
    }
}

fn parse_suite(s: &str) -> Result<Suite, String> {
    match s.to_ascii_uppercase().trim_start_matches("0X") {
        "0478" | "AES_256_GCM_HKDF_SHA512_COMMIT_KEY" => Ok(Suite::AesGcmHkdfCommit),
        "0578" | "AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384" => {
            Ok(Suite::AesGcmHkdfCommitEcdsaP384)
        }
        _ => Err(format!("unknown suite {s:?}: use 0x0478 or 0x0578")),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn backup_takes_flags_or_the_verify_subcommand() {
        use clap::Parser as _;
        let cli = Cli::try_parse_from(["keyward", "backup", "verify", "f.kwb"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Backup(crate::backup::BackupArgs {
                command: Some(crate::backup::BackupCommand::Verify(_)),
                ..
            })
        ));
        assert!(Cli::try_parse_from(["keyward", "backup", "--out", "f"]).is_ok());
        assert!(Cli::try_parse_from(["keyward", "backup"]).is_err());
        assert!(Cli::try_parse_from(["keyward", "backup", "--out", "f", "verify", "g"]).is_err());
    }

    #[test]
    fn pairs_and_suites_parse() {
        assert_eq!(parse_pair("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_pair("a="), Ok(("a".into(), String::new())));
        assert!(parse_pair("=b").is_err());
        assert!(parse_pair("ab").is_err());
        assert_eq!(parse_suite("0x0578"), Ok(Suite::AesGcmHkdfCommitEcdsaP384));
        assert_eq!(parse_suite("0478"), Ok(Suite::AesGcmHkdfCommit));
        assert!(parse_suite("0x0014").is_err());
    }

    #[test]
    fn a_database_url_is_left_out_of_debug_output() {
        use clap::Parser as _;
        let url = "postgres://kw:hunter2-secret@db/kw";
        for args in [
            vec!["keyward", "serve", "--database-url", url],
            vec!["keyward", "access-key", "list", "--database-url", url],
            vec!["keyward", "audit", "query", "--database-url", url],
            vec!["keyward", "backup", "--out", "f", "--database-url", url],
            vec!["keyward", "restore", "--from", "f", "--database-url", url],
        ] {
            let cli = Cli::try_parse_from(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            let shown = format!("{cli:?}");
            assert!(shown.contains("SecretArg(..)"), "{shown}");
            assert!(!shown.contains("hunter2"), "{shown}");
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum CaCommand {
    /// Make the root and intermediate CA (`keyward serve` makes one with the defaults on
    /// first start if there is none).
    Init {
        /// The SPIFFE trust domain.
        #[arg(long, default_value = "keyward.internal")]
        trust_domain: String,
        /// ECDSA curve: p256 or p384.
        #[arg(long, default_value = "p256")]
        algorithm: String,
        /// The longest lifetime the CA will issue, e.g. 90d.
        #[arg(long, default_value = "90d")]
        max_ttl: String,
        #[command(flatten)]
        dir: DataDirArgs,
    },
    /// Print the CA's trust domain, certificates and whether the root key is here.
    Show {
        #[command(flatten)]
        dir: DataDirArgs,
    },
    /// Write the root certificate and private key (PEM, mode 0600) for offline keeping.
    ExportRoot {
        /// Where to write them; must not exist.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        dir: DataDirArgs,
    },
    /// Remove the root's private key from the service, after checking the export holds it.
    RemoveRoot {
        /// The file `keyward ca export-root` wrote.
        #[arg(long, value_name = "FILE")]
        exported: PathBuf,
        #[command(flatten)]
        dir: DataDirArgs,
    },
}

/// What a new certificate names.
#[derive(Debug, Args)]
pub(crate) struct NameArgs {
    /// The SPIFFE ID (spiffe://<trust-domain>/<path>).
    #[arg(long, value_name = "ID")]
    pub(crate) spiffe_id: Option<String>,
    /// A DNS name. Repeatable.
    #[arg(long, value_name = "NAME")]
    pub(crate) dns: Vec<String>,
    /// An IP address. Repeatable.
    #[arg(long, value_name = "IP")]
    pub(crate) ip: Vec<std::net::IpAddr>,
    /// Lifetime, e.g. 24h, 2m, 30d.
    #[arg(long, default_value = "24h")]
    pub(crate) ttl: String,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CertCommand {
    /// Issue a certificate and a new key: writes cert.pem (with the intermediate),
    /// key.pem (0600) and ca.pem (the root) into a directory.
    Issue {
        #[command(flatten)]
        names: NameArgs,
        /// The directory to write into (made if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        #[command(flatten)]
        dir: DataDirArgs,
    },
    /// Sign a certificate signing request (PEM). Without name flags, the CSR's single
    /// SPIFFE ID is used.
    Sign {
        /// The CSR file.
        #[arg(long, value_name = "FILE")]
        csr: PathBuf,
        #[command(flatten)]
        names: NameArgs,
        /// Where to write the certificate chain (PEM).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        dir: DataDirArgs,
    },
    /// Revoke a certificate by serial number (hex); the service's CRL lists it within
    /// seconds and its client verification refuses it.
    Revoke {
        /// The serial number, as `keyward cert list` prints it.
        serial: String,
        #[command(flatten)]
        dir: DataDirArgs,
    },
    /// List the certificates the CA issued.
    List {
        #[command(flatten)]
        dir: DataDirArgs,
    },
    /// Check a certificate file: exits 0 when valid and outside its warning window, 1 when
    /// inside it (30/14/7 days for long certificates, the last third of the lifetime for
    /// short ones), 2 when expired or not yet valid.
    Check {
        /// The certificate (PEM; the first one is checked).
        #[arg(long, value_name = "FILE")]
        cert: PathBuf,
    },
    /// Renew a certificate over mTLS with the service, authenticating with the current
    /// one: a new key, the same identity. With --daemon, keeps doing so at 2/3 of each
    /// lifetime (with jitter).
    Renew {
        /// The current certificate chain (PEM), replaced on success.
        #[arg(long, value_name = "FILE")]
        cert: PathBuf,
        /// The current private key (PEM), replaced on success.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The CA certificate to trust (the service's ca.pem).
        #[arg(long, value_name = "FILE")]
        ca: PathBuf,
        /// The service, https://HOST:PORT.
        #[arg(long, value_name = "URL")]
        server: String,
        /// Keep renewing.
        #[arg(long)]
        daemon: bool,
        /// A shell command to run after each renewal.
        #[arg(long, value_name = "COMMAND")]
        exec: Option<String>,
        /// A process to signal after each renewal: PID or PID:SIGNAL (default HUP).
        #[arg(long, value_name = "PID[:SIGNAL]")]
        signal: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum TlsCommand {
    /// Audit a TLS endpoint against a profile (exit 0 compliant, 1 not, 2 unreachable).
    ///
    /// Works on any implementation: protocol versions from SSL 3.0 to TLS 1.3, cipher
    /// suites per version, key exchange groups, the certificate; then a verdict against a
    /// profile, naming every rule broken. Exits 0 when compliant, 1 when not, 2 when the
    /// target cannot be reached or speaks no TLS, 64 on a bad flag.
    Scan(ScanArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ScanArgs {
    /// The endpoint, HOST:PORT (an IPv6 address in brackets).
    #[arg(value_name = "HOST:PORT")]
    pub(crate) target: String,
    /// The name to send as SNI and check against the certificate [default: HOST].
    #[arg(long, value_name = "NAME")]
    pub(crate) sni: Option<String>,
    /// The profile: modern or intermediate (Mozilla 5.7, as sslyze checks them) or
    /// internal (keyward's short-lived internal PKI).
    #[arg(long, default_value = "modern", value_name = "PROFILE")]
    pub(crate) profile: String,
    /// Trust anchors (PEM) to validate the chain against; without it the chain is
    /// reported as not validated (a finding).
    #[arg(long, value_name = "FILE")]
    pub(crate) ca: Option<PathBuf>,
    /// A client certificate chain (PEM) to present, for servers that require one.
    #[arg(long, value_name = "FILE", requires = "client_key")]
    pub(crate) client_cert: Option<PathBuf>,
    /// The private key (PEM) for --client-cert.
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    pub(crate) client_key: Option<PathBuf>,
    /// Print a JSON document instead of the table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Connect and read timeout of each probe, in seconds (1 to 60).
    #[arg(long, default_value_t = 5, value_name = "SECS")]
    pub(crate) timeout: u64,
}
