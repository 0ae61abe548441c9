//! `keyward access-key create|list|delete`: SigV4 credentials for the service in a data
//! directory. The running server looks keys up on every request, so changes apply at once.

use keyward_kms::{Clock as _, KmsConfig, SystemClock};

use crate::cli::{AccessKeyCommand, DataDirArgs};
use crate::files::CliError;
use crate::serve::{data_dir, database_url, failed, open_kms};

pub(crate) fn kms(dir: &DataDirArgs) -> Result<keyward_kms::Kms, CliError> {
    let path = data_dir(dir.data_dir.as_deref()).ok_or_else(|| {
        CliError::usage("invalid setting data_dir: set --data-dir or KEYWARD_DATA_DIR")
    })?;
    let database = database_url(dir.database_url.as_deref())?;
    // With SQLite the data directory holds everything; with PostgreSQL, the root key
    // unless a provider seals it.
    let missing = match &database {
        None => !path.join("keyward.db").exists(),
        Some(url) => {
            let store = crate::serve::open_store(&path, Some(url))?;
            matches!(
                keyward_kms::seal::Seal::load(&*store)
                    .map_err(|e| failed("reading the seal")(&e))?,
                keyward_kms::seal::Seal::File
            ) && !path.join(crate::serve::ROOT_KEY_FILE).exists()
        }
    };
    if missing {
        return Err(CliError::usage(format!(
            "invalid setting data_dir: {} holds no keyward data (start `keyward serve` first)",
            path.display()
        )));
    }
    open_kms(&path, database.as_ref(), KmsConfig::default())
}

pub(crate) fn run(command: &AccessKeyCommand) -> Result<(), CliError> {
    match command {
        AccessKeyCommand::Create { principal, dir } => {
            if principal.is_empty() || principal.len() > 256 || principal.contains(char::is_control)
            {
                return Err(CliError::usage(
                    "invalid setting --principal: 1 to 256 printable characters",
                ));
            }
            let kms = kms(dir)?;
            let key = keyward_server::access::create(&kms, principal, SystemClock.now())
                .map_err(|e| failed("creating the access key")(&e))?;
            eprintln!("keyward: access key for {principal}; the secret is shown only now");
            println!("export AWS_ACCESS_KEY_ID={}", key.access_key_id);
            println!("export AWS_SECRET_ACCESS_KEY={}", &*key.secret);
        }
        AccessKeyCommand::List { dir } => {
            let kms = kms(dir)?;
            for k in kms
                .store()
                .access_keys()
                .map_err(|e| failed("listing access keys")(&e))?
            {
                println!("{}\t{}\t{}", k.access_key_id, k.principal, k.created_at);
            }
        }
        AccessKeyCommand::Delete { access_key_id, dir } => {
            let kms = kms(dir)?;
            kms.store()
                .delete_access_key(access_key_id)
                .map_err(|e| match e {
                    keyward_store::StoreError::NotFound => {
                        CliError::failed(format!("no access key {access_key_id}"))
                    }
                    e => failed("deleting the access key")(&e),
                })?;
            eprintln!("keyward: deleted access key {access_key_id}");
        }
    }
    Ok(())
}
