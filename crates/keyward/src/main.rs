//! keyward: self-hosted key management and envelope encryption.
//!
//! `main` only parses arguments and calls in; each command lives in its own module.

use std::process::ExitCode;

use clap::Parser as _;

mod access_key;
mod admin;
mod audit_cli;
mod backup;
mod cli;
mod doctor;
mod envelope;
mod files;
mod https;
mod kms_client;
mod operator;
mod pki_cli;
mod serve;
mod tls_scan_cli;

/// Exit code for a bad flag or setting (sysexits EX_USAGE).
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(EXIT_USAGE),
            };
        }
    };
    let result = match cli.command {
        cli::Command::Serve(args) => serve::run(&args),
        cli::Command::AccessKey(command) => access_key::run(&command),
        cli::Command::Key(command) => admin::run(&command),
        cli::Command::Ca(command) => pki_cli::ca(&command),
        cli::Command::Cert(command) => pki_cli::cert(&command),
        cli::Command::Audit(command) => audit_cli::run(&command),
        cli::Command::Tls(cli::TlsCommand::Scan(args)) => tls_scan_cli::scan(&args),
        cli::Command::Operator(command) => operator::run(&command),
        cli::Command::Doctor(args) => doctor::run(&args),
        cli::Command::Backup(args) => backup::backup(&args),
        cli::Command::Restore(args) => backup::restore(&args),
        cli::Command::Keygen(args) => envelope::keygen(&args),
        cli::Command::Encrypt(args) => envelope::encrypt(&args),
        cli::Command::Decrypt(args) => envelope::decrypt(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let message = e.to_string();
            if !message.is_empty() {
                eprintln!("keyward: {message}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}
