//! `keyward key ...`: key administration over the service's own API (the AWS KMS JSON
//! protocol with SigV4), printing the API's JSON answers as aws-cli does.

use serde_json::{Value, json};

use crate::cli::KeyCommand;
use crate::files::CliError;
use crate::kms_client::HttpKms;

pub(crate) fn run(command: &KeyCommand) -> Result<(), CliError> {
    let kms = HttpKms::from_env()?;
    let call = |op: &str, body: Value| -> Result<Value, CliError> {
        match kms
            .call(op, &body)
            .map_err(|e| CliError::failed(e.to_string()))?
        {
            Ok(v) => Ok(v),
            Err((kind, message)) => Err(CliError::failed(format!("{op}: {kind}: {message}"))),
        }
    };
    let out = match command {
        KeyCommand::Create {
            description,
            alias,
            policy,
        } => {
            let mut request = json!({ "Description": description });
            if let Some(path) = policy {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    CliError::usage(format!("invalid setting --policy {}: {e}", path.display()))
                })?;
                request["Policy"] = Value::String(text);
            }
            let created = call("CreateKey", request)?;
            if let Some(alias) = alias {
                call(
                    "CreateAlias",
                    json!({ "AliasName": alias, "TargetKeyId": created["KeyMetadata"]["KeyId"] }),
                )?;
            }
            created
        }
        KeyCommand::List => {
            let (mut keys, mut marker) = (Vec::new(), None::<String>);
            loop {
                let page = call("ListKeys", json!({ "Limit": 1000, "Marker": marker }))?;
                keys.extend(page["Keys"].as_array().cloned().unwrap_or_default());
                match page["NextMarker"].as_str() {
                    Some(m) => marker = Some(m.to_owned()),
                    None => break,
                }
            }
            json!({ "Keys": keys })
        }
        KeyCommand::Describe { key } => call("DescribeKey", json!({ "KeyId": key }))?,
        KeyCommand::Alias { alias, key } => {
            // Resolve to the key id: management operations take ids, not aliases.
            let id = call("DescribeKey", json!({ "KeyId": key }))?["KeyMetadata"]["KeyId"].clone();
            match call(
                "CreateAlias",
                json!({ "AliasName": alias, "TargetKeyId": id }),
            ) {
                Err(e) if e.to_string().contains("AlreadyExistsException") => call(
                    "UpdateAlias",
                    json!({ "AliasName": alias, "TargetKeyId": id }),
                )?,
                other => other?,
            }
        }
        KeyCommand::Rotate { key } => {
            call("RotateKeyOnDemand", json!({ "KeyId": key_id(&call, key)? }))?
        }
        KeyCommand::Enable { key } => call("EnableKey", json!({ "KeyId": key_id(&call, key)? }))?,
        KeyCommand::Disable { key } => call("DisableKey", json!({ "KeyId": key_id(&call, key)? }))?,
        KeyCommand::ScheduleDeletion { key, days } => call(
            "ScheduleKeyDeletion",
            json!({ "KeyId": key_id(&call, key)?, "PendingWindowInDays": days }),
        )?,
        KeyCommand::CancelDeletion { key } => {
            call("CancelKeyDeletion", json!({ "KeyId": key_id(&call, key)? }))?
        }
    };
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    Ok(())
}

/// The key id behind an id, ARN or alias.
fn key_id(
    call: &impl Fn(&str, Value) -> Result<Value, CliError>,
    key: &str,
) -> Result<Value, CliError> {
    Ok(call("DescribeKey", json!({ "KeyId": key }))?["KeyMetadata"]["KeyId"].clone())
}
