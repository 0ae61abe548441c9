//! `keyward audit verify|export|query|report`: proving the audit log complete and
//! unaltered, keeping a copy elsewhere, and answering "who used which key, when".
//!
//! The log is read from a data directory (the database, and the JSON-lines copy beside
//! it) or from exported files. Nothing here needs the root key: records hold no secrets
//! and checkpoints verify with the public key the service keeps in clear.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use keyward_audit::{Checkpoint, Outcome, Record};
use keyward_store::Store;

use crate::files::CliError;
use crate::serve::failed;

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Prove the log complete and unaltered: every record in sequence, each hash right,
    /// each checkpoint's signature good and its record present. Exits 1 naming the first
    /// broken record.
    Verify(VerifyArgs),
    /// Write the log, its checkpoints and the checkpoint public key to a directory, for
    /// safekeeping apart from the service.
    Export(ExportArgs),
    /// Print the records that match the filters, one JSON object per line.
    Query(QueryArgs),
    /// Who used which key, when and how often: one row per key, principal, operation and
    /// outcome, with counts and first and last times.
    Report(ReportArgs),
}

/// Where the log is read from.
#[derive(Debug, Args)]
pub(crate) struct Source {
    /// A data directory: the log in its database (and, for verify, the JSON-lines copy in
    /// its audit directory) [env: KEYWARD_DATA_DIR].
    #[arg(long, value_name = "DIR", conflicts_with = "file")]
    pub(crate) data_dir: Option<PathBuf>,
    /// The service's PostgreSQL database, if it keeps its log there rather than in SQLite
    /// in the data directory [env: KEYWARD_DATABASE_URL].
    #[arg(long, value_name = "URL", conflicts_with = "file")]
    pub(crate) database_url: Option<crate::cli::SecretArg>,
    /// An exported or copied `audit.jsonl`; its checkpoints and public key are read from
    /// `checkpoints.jsonl` and `audit-public-key` beside it unless given.
    #[arg(long, value_name = "FILE")]
    pub(crate) file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    #[command(flatten)]
    pub(crate) source: Source,
    /// The audit directory's JSON-lines copy to check beside the database
    /// [default: DATA_DIR/audit].
    #[arg(long, value_name = "DIR", conflicts_with = "file")]
    pub(crate) audit_dir: Option<PathBuf>,
    /// More checkpoints to hold the log to, e.g. an export kept elsewhere: a log cut
    /// short of one of them fails. Repeatable.
    #[arg(long, value_name = "FILE")]
    pub(crate) checkpoints: Vec<PathBuf>,
    /// The checkpoint public key (hex), or a file holding it. With --data-dir it is read
    /// from the database; pass it to check against a copy kept elsewhere.
    #[arg(long, value_name = "HEX|FILE")]
    pub(crate) public_key: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// The data directory [env: KEYWARD_DATA_DIR].
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// The service's PostgreSQL database, if it keeps its log there rather than in SQLite
    /// in the data directory [env: KEYWARD_DATABASE_URL].
    #[arg(long, value_name = "URL")]
    pub(crate) database_url: Option<crate::cli::SecretArg>,
    /// A new directory to write audit.jsonl, checkpoints.jsonl and audit-public-key to.
    #[arg(long, value_name = "DIR")]
    pub(crate) out: PathBuf,
}

/// Which records.
#[derive(Debug, Args)]
pub(crate) struct Filters {
    /// Only records of this key (key id, key ARN or alias ARN). Repeatable.
    #[arg(long = "key", value_name = "KEY")]
    pub(crate) keys: Vec<String>,
    /// Only records of this principal. Repeatable.
    #[arg(long = "principal", value_name = "PRINCIPAL")]
    pub(crate) principals: Vec<String>,
    /// Only this operation, e.g. Decrypt. Repeatable.
    #[arg(long = "operation", value_name = "OP")]
    pub(crate) operations: Vec<String>,
    /// Only this outcome.
    #[arg(long, value_enum)]
    pub(crate) outcome: Option<OutcomeArg>,
    /// From this time on (RFC 3339, e.g. 2026-12-01T00:00:00Z, or Unix seconds).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub(crate) since: Option<i64>,
    /// Before this time (RFC 3339 or Unix seconds).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub(crate) until: Option<i64>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum OutcomeArg {
    Allowed,
    Denied,
    Failed,
}

#[derive(Debug, Args)]
pub(crate) struct QueryArgs {
    #[command(flatten)]
    pub(crate) source: Source,
    #[command(flatten)]
    pub(crate) filters: Filters,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    Table,
    Json,
    Csv,
}

#[derive(Debug, Args)]
pub(crate) struct ReportArgs {
    #[command(flatten)]
    pub(crate) source: Source,
    #[command(flatten)]
    pub(crate) filters: Filters,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub(crate) format: Format,
}

/// Parses RFC 3339 or Unix seconds into milliseconds since the epoch.
fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(secs) = s.parse::<i64>() {
        return secs
            .checked_mul(1000)
            .ok_or_else(|| format!("{s:?} is out of range"));
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|_| {
            format!("{s:?} is neither RFC 3339 (2026-12-01T00:00:00Z) nor Unix seconds")
        })?;
    Ok((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// Milliseconds since the Unix epoch as RFC 3339 (the number itself if out of range).
pub(crate) fn format_time(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

pub(crate) fn run(command: &AuditCommand) -> Result<(), CliError> {
    match command {
        AuditCommand::Verify(args) => verify(args),
        AuditCommand::Export(args) => export(args),
        AuditCommand::Query(args) => query(args),
        AuditCommand::Report(args) => report(args),
    }
}

/// The data directory and the store: PostgreSQL if a database URL is given (flag or
/// `KEYWARD_DATABASE_URL`), else SQLite in the data directory.
fn open_store(
    data_dir: Option<&Path>,
    database_url: Option<&str>,
) -> Result<(PathBuf, std::sync::Arc<dyn Store>), CliError> {
    let dir = crate::serve::data_dir(data_dir)
        .ok_or_else(|| CliError::usage("--data-dir: no data directory given or found"))?;
    let database = crate::serve::database_url(database_url)?;
    if database.is_none() && !dir.join("keyward.db").exists() {
        return Err(CliError::usage(format!(
            "--data-dir: no keyward database in {}",
            dir.display()
        )));
    }
    let store = crate::serve::open_store(&dir, database.as_ref())?;
    Ok((dir, store))
}

/// The checkpoint public key the database keeps (hex).
fn stored_public_key(store: &dyn Store) -> Result<String, CliError> {
    store
        .meta(keyward_server::audit::PUBLIC_KEY_META)
        .map_err(|e| failed("database")(&e))?
        .and_then(|k| String::from_utf8(k).ok())
        .ok_or_else(|| failed("audit")(&"this data directory has no audit log yet"))
}

/// The store's records in order, a page at a time; a read error ends the iteration and
/// is kept for the caller.
struct StoreLines<'a> {
    store: &'a dyn Store,
    after: u64,
    page: std::vec::IntoIter<keyward_store::AuditRow>,
    error: Option<keyward_store::StoreError>,
}

impl<'a> StoreLines<'a> {
    fn new(store: &'a dyn Store) -> Self {
        Self {
            store,
            after: 0,
            page: Vec::new().into_iter(),
            error: None,
        }
    }
}

impl Iterator for StoreLines<'_> {
    type Item = String;
    fn next(&mut self) -> Option<String> {
        if let Some(row) = self.page.next() {
            self.after = row.seq;
            return Some(row.line);
        }
        match self.store.audit_records(self.after, 10_000) {
            Ok(rows) if rows.is_empty() => None,
            Ok(rows) => {
                self.page = rows.into_iter();
                let row = self.page.next()?;
                self.after = row.seq;
                Some(row.line)
            }
            Err(e) => {
                self.error = Some(e);
                None
            }
        }
    }
}

/// A file's lines; a read error ends the iteration and is kept.
struct FileLines {
    lines: Box<dyn Iterator<Item = io::Result<String>>>,
    error: Option<io::Error>,
}

impl FileLines {
    fn open(path: &Path) -> Result<Self, CliError> {
        let f = fs::File::open(path).map_err(|e| failed(&path.display().to_string())(&e))?;
        Ok(Self {
            lines: Box::new(keyward_audit::sink::lines(f)),
            error: None,
        })
    }
}

impl Iterator for FileLines {
    type Item = String;
    fn next(&mut self) -> Option<String> {
        match self.lines.next()? {
            Ok(line) => Some(line),
            Err(e) => {
                self.error = Some(e);
                None
            }
        }
    }
}

fn read_checkpoint_file(path: &Path) -> Result<Vec<Checkpoint>, CliError> {
    keyward_audit::sink::read_checkpoints(path)
        .map_err(|e| failed(&format!("checkpoints {}", path.display()))(&e))
}

fn public_key_arg(arg: &str) -> Result<String, CliError> {
    let text = if arg.len() > 2 && arg.bytes().all(|b| b.is_ascii_hexdigit()) {
        arg.to_owned()
    } else {
        fs::read_to_string(arg).map_err(|e| CliError::usage(format!("--public-key {arg}: {e}")))?
    };
    let key = text.trim().to_ascii_lowercase();
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(CliError::usage("--public-key: not a hex public key"));
    }
    Ok(key)
}

/// Verifies one copy of the log; prints what it proved or the first break.
fn verify_one(
    name: &str,
    lines: impl Iterator<Item = String>,
    checkpoints: &[Checkpoint],
    public_key: &str,
) -> Option<keyward_audit::Verified> {
    match keyward_audit::verify(lines, checkpoints, public_key) {
        Ok(v) => {
            println!(
                "{name}: verified {} records, {} checkpoints matched, last hash {}",
                v.records, v.checkpoints, v.last_hash
            );
            Some(v)
        }
        Err(broken) => {
            println!("{name}: BROKEN at record {}: {broken}", broken.seq());
            None
        }
    }
}

fn verify(args: &VerifyArgs) -> Result<(), CliError> {
    let mut extra = Vec::new();
    for path in &args.checkpoints {
        extra.extend(read_checkpoint_file(path)?);
    }
    let given_key = args.public_key.as_deref().map(public_key_arg).transpose()?;
    let given = given_key.is_some();
    let key_source = |key: &str, from: &str| {
        let short = key.get(..24).unwrap_or(key);
        if given {
            println!("checkpoint public key {short}… (given with --public-key)");
        } else {
            println!(
                "checkpoint public key {short}… (read from {from}: pass --public-key with a copy kept elsewhere to rule out a swapped key)"
            );
        }
    };
    let mut ok = true;
    if let Some(file) = &args.source.file {
        let dir = file.parent().unwrap_or(Path::new("."));
        let public_key = match given_key.clone() {
            Some(k) => k,
            None => public_key_arg(
                &dir.join(keyward_server::audit::PUBLIC_KEY_FILE)
                    .display()
                    .to_string(),
            )
            .map_err(|_| {
                CliError::usage(format!(
                    "--public-key: none given and no {} beside {}",
                    keyward_server::audit::PUBLIC_KEY_FILE,
                    file.display()
                ))
            })?,
        };
        key_source(&public_key, "beside the file");
        let mut checkpoints = extra;
        let beside = dir.join(keyward_audit::sink::CHECKPOINTS);
        if beside.exists() {
            checkpoints.extend(read_checkpoint_file(&beside)?);
        }
        let mut lines = FileLines::open(file)?;
        let result = verify_one(
            &file.display().to_string(),
            &mut lines,
            &checkpoints,
            &public_key,
        );
        if let Some(e) = lines.error {
            return Err(failed(&file.display().to_string())(&e));
        }
        ok &= result.is_some();
    } else {
        let (dir, store) = open_store(
            args.source.data_dir.as_deref(),
            args.source.database_url.as_deref(),
        )?;
        let stored_key = stored_public_key(&*store)?;
        if let Some(given) = &given_key
            && *given != stored_key
        {
            println!("database: BROKEN: its checkpoint public key is not the one given");
            return Err(CliError::exit(1));
        }
        key_source(&stored_key, "the database");
        let mut checkpoints = extra.clone();
        for row in store
            .audit_checkpoints()
            .map_err(|e| failed("database")(&e))?
        {
            match serde_json::from_str::<Checkpoint>(&row.line) {
                Ok(c) => checkpoints.push(c),
                Err(_) => {
                    println!(
                        "database: BROKEN: a checkpoint that does not parse (record {})",
                        row.seq
                    );
                    return Err(CliError::exit(1));
                }
            }
        }
        let mut lines = StoreLines::new(&*store);
        let in_store = verify_one("database", &mut lines, &checkpoints, &stored_key);
        if let Some(e) = lines.error {
            return Err(failed("database")(&e));
        }
        let audit_dir = args
            .audit_dir
            .clone()
            .unwrap_or_else(|| dir.join(keyward_server::audit::DEFAULT_DIR));
        let records = audit_dir.join(keyward_audit::sink::RECORDS);
        let mut in_file = None;
        if store.shared() {
            // Nodes sharing a database keep the log there only (no file sink).
            println!("database: the log's one copy, shared by every node");
        } else if records.exists() {
            let mut checkpoints = extra;
            let beside = audit_dir.join(keyward_audit::sink::CHECKPOINTS);
            if beside.exists() {
                checkpoints.extend(read_checkpoint_file(&beside)?);
            }
            let mut lines = FileLines::open(&records)?;
            in_file = verify_one(
                &records.display().to_string(),
                &mut lines,
                &checkpoints,
                &stored_key,
            );
            if let Some(e) = lines.error {
                return Err(failed(&records.display().to_string())(&e));
            }
            ok &= in_file.is_some();
        } else {
            println!("{}: BROKEN: missing", records.display());
            ok = false;
        }
        ok &= in_store.is_some();
        if let (Some(a), Some(b)) = (&in_store, &in_file)
            && a != b
        {
            println!(
                "BROKEN: the database ({} records) and {} ({} records) differ",
                a.records,
                records.display(),
                b.records
            );
            ok = false;
        }
    }
    if ok { Ok(()) } else { Err(CliError::exit(1)) }
}

fn create_new(path: &Path, text: &str, mode: u32) -> Result<(), CliError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| failed(&path.display().to_string())(&e))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| failed(&path.display().to_string())(&e))
}

fn export(args: &ExportArgs) -> Result<(), CliError> {
    let (_, store) = open_store(args.data_dir.as_deref(), args.database_url.as_deref())?;
    let public_key = stored_public_key(&*store)?;
    fs::create_dir_all(&args.out).map_err(|e| failed(&args.out.display().to_string())(&e))?;
    // Checkpoints first: records appended meanwhile are then past the last checkpoint,
    // never the other way round.
    let mut checkpoints = String::new();
    for row in store
        .audit_checkpoints()
        .map_err(|e| failed("database")(&e))?
    {
        checkpoints.push_str(&row.line);
        checkpoints.push('\n');
    }
    let mut records = String::new();
    let mut lines = StoreLines::new(&*store);
    let mut n = 0u64;
    for line in &mut lines {
        records.push_str(&line);
        records.push('\n');
        n += 1;
    }
    if let Some(e) = lines.error {
        return Err(failed("database")(&e));
    }
    create_new(
        &args.out.join(keyward_audit::sink::RECORDS),
        &records,
        0o600,
    )?;
    create_new(
        &args.out.join(keyward_audit::sink::CHECKPOINTS),
        &checkpoints,
        0o600,
    )?;
    create_new(
        &args.out.join(keyward_server::audit::PUBLIC_KEY_FILE),
        &format!("{public_key}\n"),
        0o644,
    )?;
    println!("exported {n} records to {}", args.out.display());
    Ok(())
}

impl Filters {
    fn matches(&self, r: &Record) -> bool {
        let e = &r.event;
        let key_ok = self.keys.is_empty()
            || e.key_arn.as_deref().is_some_and(|arn| {
                self.keys.iter().any(|k| {
                    arn == k
                        || arn
                            .strip_suffix(k.as_str())
                            .is_some_and(|p| p.ends_with('/'))
                })
            });
        let principal_ok = self.principals.is_empty()
            || e.principal
                .as_deref()
                .is_some_and(|p| self.principals.iter().any(|q| q == p));
        let op_ok = self.operations.is_empty() || self.operations.contains(&e.operation);
        let outcome_ok = match self.outcome {
            None => true,
            Some(OutcomeArg::Allowed) => e.outcome == Outcome::Allowed,
            Some(OutcomeArg::Denied) => e.outcome == Outcome::Denied,
            Some(OutcomeArg::Failed) => e.outcome == Outcome::Failed,
        };
        key_ok
            && principal_ok
            && op_ok
            && outcome_ok
            && self.since.is_none_or(|t| e.time_ms >= t)
            && self.until.is_none_or(|t| e.time_ms < t)
    }
}

/// Calls `f` with every record of the source that matches, in order.
fn each_record(
    source: &Source,
    filters: &Filters,
    mut f: impl FnMut(Record),
) -> Result<(), CliError> {
    let mut visit = |line: String| -> Result<(), CliError> {
        let r: Record = serde_json::from_str(&line).map_err(|_| {
            failed("audit")(&"a line that is not an audit record (run keyward audit verify)")
        })?;
        if filters.matches(&r) {
            f(r);
        }
        Ok(())
    };
    if let Some(file) = &source.file {
        let mut lines = FileLines::open(file)?;
        for line in &mut lines {
            visit(line)?;
        }
        if let Some(e) = lines.error {
            return Err(failed(&file.display().to_string())(&e));
        }
    } else {
        let (_, store) = open_store(source.data_dir.as_deref(), source.database_url.as_deref())?;
        let mut lines = StoreLines::new(&*store);
        for line in &mut lines {
            visit(line)?;
        }
        if let Some(e) = lines.error {
            return Err(failed("database")(&e));
        }
    }
    Ok(())
}

fn query(args: &QueryArgs) -> Result<(), CliError> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut write_error = None;
    each_record(&args.source, &args.filters, |r| {
        if write_error.is_none()
            && let Err(e) = writeln!(out, "{}", r.line())
        {
            write_error = Some(e);
        }
    })?;
    if let Some(e) = write_error.or_else(|| out.flush().err()) {
        return Err(failed("stdout")(&e));
    }
    Ok(())
}

/// One row of the report.
#[derive(Debug, Default, serde::Serialize)]
struct Row {
    key: String,
    principal: String,
    operation: String,
    outcome: &'static str,
    count: u64,
    first: String,
    last: String,
}

fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Allowed => "allowed",
        Outcome::Denied => "denied",
        Outcome::Failed => "failed",
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn report(args: &ReportArgs) -> Result<(), CliError> {
    // (key, principal, operation, outcome) -> (count, first, last)
    type Group = (String, String, String, &'static str);
    let mut groups: BTreeMap<Group, (u64, i64, i64)> = BTreeMap::new();
    each_record(&args.source, &args.filters, |r| {
        let e = r.event;
        let g = groups
            .entry((
                e.key_arn.unwrap_or_else(|| "-".into()),
                e.principal.unwrap_or_else(|| "-".into()),
                e.operation,
                outcome_name(e.outcome),
            ))
            .or_insert((0, e.time_ms, e.time_ms));
        g.0 += 1;
        g.1 = g.1.min(e.time_ms);
        g.2 = g.2.max(e.time_ms);
    })?;
    let rows: Vec<Row> = groups
        .into_iter()
        .map(
            |((key, principal, operation, outcome), (count, first, last))| Row {
                key,
                principal,
                operation,
                outcome,
                count,
                first: format_time(first),
                last: format_time(last),
            },
        )
        .collect();
    let text = match args.format {
        Format::Json => serde_json::to_string_pretty(&rows).unwrap_or_default() + "\n",
        Format::Csv => {
            let mut s = String::from("key,principal,operation,outcome,count,first,last\n");
            for r in &rows {
                s.push_str(&format!(
                    "{},{},{},{},{},{},{}\n",
                    csv_field(&r.key),
                    csv_field(&r.principal),
                    csv_field(&r.operation),
                    r.outcome,
                    r.count,
                    r.first,
                    r.last
                ));
            }
            s
        }
        Format::Table => {
            let headers = [
                "KEY",
                "PRINCIPAL",
                "OPERATION",
                "OUTCOME",
                "COUNT",
                "FIRST",
                "LAST",
            ];
            let cells: Vec<[String; 7]> = rows
                .iter()
                .map(|r| {
                    [
                        r.key.clone(),
                        r.principal.clone(),
                        r.operation.clone(),
                        r.outcome.to_owned(),
                        r.count.to_string(),
                        r.first.clone(),
                        r.last.clone(),
                    ]
                })
                .collect();
            let mut width = headers.map(str::len);
            for row in &cells {
                for (w, c) in width.iter_mut().zip(row) {
                    *w = (*w).max(c.len());
                }
            }
            let mut s = String::new();
            let line = |s: &mut String, cols: &[&str]| {
                let padded: Vec<String> = cols
                    .iter()
                    .zip(width)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect();
                s.push_str(padded.join("  ").trim_end());
                s.push('\n');
            };
            line(&mut s, &headers);
            for row in &cells {
                let cols: Vec<&str> = row.iter().map(String::as_str).collect();
                line(&mut s, &cols);
            }
            s
        }
    };
    print!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn times_parse_both_ways() {
        assert_eq!(parse_time("1800000000").unwrap(), 1_800_000_000_000);
        assert_eq!(
            parse_time("2027-01-15T08:00:00Z").unwrap(),
            1_800_000_000_000
        );
        assert_eq!(format_time(1_800_000_000_000), "2027-01-15T08:00:00Z");
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn csv_quotes_what_it_must() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
