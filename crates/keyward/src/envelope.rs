//! `keyward keygen`, `keyward encrypt` and `keyward decrypt`.

use keyward_envelope::{
    DecryptOptions, EncryptOptions, EncryptionContext, Error, Keyring, KmsKeyring, Limits,
    MultiKeyring, RawAesKeyring, WrappingKey,
};

use crate::cli::{DecryptArgs, EncryptArgs, KeyArgs, KeygenArgs};
use crate::files::{CliError, Output, open_input, read_key_file, write_key_file};

pub(crate) fn keygen(args: &KeygenArgs) -> Result<(), CliError> {
    let key = WrappingKey::generate().map_err(|e| CliError::failed(e.to_string()))?;
    write_key_file(&args.out, &key)
}

pub(crate) fn encrypt(args: &EncryptArgs) -> Result<(), CliError> {
    let keyring = keyring(&args.keys)?;
    let context = context("--context", &args.context)?;
    let options = EncryptOptions {
        suite: args.suite,
        frame_length: args.frame_length,
        parallelism: args.threads,
    };
    let input = open_input(&args.io.input)?;
    let mut output = Output::create(&args.io.output, &args.io.input, true)?;
    keyward_envelope::encrypt(&*keyring, &context, &options, input, output.writer()).map_err(
        |e| match e {
            Error::InvalidInput(e) => CliError::usage(e.to_string()),
            e => CliError::failed(format!("encryption failed: {e}")),
        },
    )?;
    output.commit()
}

pub(crate) fn decrypt(args: &DecryptArgs) -> Result<(), CliError> {
    let keyring = keyring(&args.keys)?;
    let options = DecryptOptions {
        required_context: context("--require-context", &args.require_context)?,
        limits: Limits {
            max_encrypted_data_keys: args.max_encrypted_data_keys,
            max_frame_length: args.max_frame_length,
            ..Limits::default()
        },
        parallelism: args.threads,
    };
    let input = open_input(&args.io.input)?;
    let mut output = Output::create(&args.io.output, &args.io.input, false)?;
    let to_stdout = matches!(output, Output::Stdout(_));
    match keyward_envelope::decrypt(&*keyring, &options, input, output.writer()) {
        Ok(_) => output.commit(),
        Err(e) => {
            let mut message = decrypt_error_message(&e);
            if to_stdout {
                message.push_str(" (output already written is unverified and must be discarded)");
            }
            Err(CliError::failed(message))
        }
    }
}

/// What a failed decryption says: never which check failed. Limits and I/O errors are
/// named, since they are about the input's size or the machine, not the key.
fn decrypt_error_message(e: &Error) -> String {
    match e {
        Error::Limit(l) => format!("decryption failed: message exceeds a limit: {l}"),
        Error::Io(e) => format!("decryption failed: i/o error: {e}"),
        Error::Keyring(e) => format!("decryption failed: {e}"),
        _ => "decryption failed".to_owned(),
    }
}

/// One keyring per KMS key and per key file; KMS keys come first, so a KMS key makes the
/// data key when there is one. Several make a multi-keyring.
fn keyring(args: &KeyArgs) -> Result<Box<dyn Keyring>, CliError> {
    let mut keyrings: Vec<Box<dyn Keyring>> = Vec::new();
    if !args.kms_keys.is_empty() {
        let client = std::sync::Arc::new(crate::kms_client::HttpKms::from_env()?);
        for key in &args.kms_keys {
            keyrings.push(Box::new(KmsKeyring::new(client.clone(), key.clone())));
        }
    }
    for path in &args.key_files {
        let key = read_key_file(path)?;
        let raw = RawAesKeyring::new(&args.key_namespace, &args.key_name, &key)
            .map_err(|e| CliError::usage(format!("--key-namespace/--key-name: {e}")))?;
        keyrings.push(Box::new(raw));
    }
    let mut keyrings = keyrings.into_iter();
    let first = keyrings
        .next()
        .ok_or_else(|| CliError::usage("give --key-file or --kms-key"))?;
    Ok(Box::new(
        keyrings.fold(MultiKeyring::new(first), MultiKeyring::with_child),
    ))
}

fn context(flag: &str, pairs: &[(String, String)]) -> Result<EncryptionContext, CliError> {
    let mut ctx = EncryptionContext::new();
    for (k, v) in pairs {
        if ctx.get(k).is_some() {
            return Err(CliError::usage(format!("{flag}: key {k:?} given twice")));
        }
        ctx.insert(k.clone(), v.clone());
    }
    Ok(ctx)
}
