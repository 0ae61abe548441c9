//! The AWS KMS JSON 1.1 protocol: `POST /` with `X-Amz-Target: TrentService.<Operation>`,
//! a JSON body in, a JSON body out. Blobs are standard base64, timestamps epoch seconds,
//! and every `KeyId` in a response is the full key ARN.
//!
//! [`handle`] runs one operation; [`ApiError::to_wire`] is the one place an error becomes
//! a status code, an AWS error type and a message.

use base64::Engine as _;
use keyward_kms::{CreateKeyRequest, EncryptionContext, KeyMetadata, Kms, data_key_length};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::sigv4::AuthError;

/// The `X-Amz-Target` prefix of every KMS operation.
pub const TARGET_PREFIX: &str = "TrentService.";
/// The content type of requests and responses.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
const ALGORITHM: &str = "SYMMETRIC_DEFAULT";

/// Every operation keyward serves.
pub const OPERATIONS: &[&str] = &[
    "Encrypt",
    "Decrypt",
    "ReEncrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "GenerateRandom",
    "CreateKey",
    "DescribeKey",
    "ListKeys",
    "CreateAlias",
    "UpdateAlias",
    "DeleteAlias",
    "ListAliases",
    "EnableKey",
    "DisableKey",
    "ScheduleKeyDeletion",
    "CancelKeyDeletion",
    "EnableKeyRotation",
    "DisableKeyRotation",
    "GetKeyRotationStatus",
    "RotateKeyOnDemand",
    "ListKeyRotations",
    "TagResource",
    "UntagResource",
    "ListResourceTags",
    "UpdateKeyDescription",
    "GetKeyPolicy",
    "PutKeyPolicy",
    "ListKeyPolicies",
];

/// Anything that stops a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The KMS refused or failed the operation.
    #[error(transparent)]
    Kms(#[from] keyward_kms::Error),
    /// Authentication failed.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The body is not the JSON the operation takes.
    #[error("{0}")]
    Serialization(String),
    /// A member is missing or out of range.
    #[error("{0}")]
    Validation(String),
    /// The target names no operation keyward serves.
    #[error("{0}")]
    UnknownOperation(String),
    /// The caller is over its request rate.
    #[error("Rate exceeded")]
    Throttled,
    /// The audit log cannot make the request's record durable, so the request is not
    /// performed (or its result not released).
    #[error("The audit log is unavailable: the request was not performed; retry later")]
    AuditUnavailable,
    /// The server is sealed: it holds no root key, so no key can be used or managed.
    #[error("{}", crate::server::SEALED)]
    Sealed,
}

/// An error as it goes on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    /// HTTP status: the Smithy model's `httpError` for KMS exceptions; 5xx only for what a
    /// client should retry.
    pub status: u16,
    /// `__type` and `X-Amzn-ErrorType`.
    pub aws_type: &'static str,
    /// `message`.
    pub message: String,
}

impl WireError {
    /// The JSON body: `{"__type": ..., "message": ...}`.
    pub fn body(&self) -> Vec<u8> {
        json!({ "__type": self.aws_type, "message": self.message })
            .to_string()
            .into_bytes()
    }
}

impl ApiError {
    /// The one mapping of errors to the wire.
    pub fn to_wire(&self) -> WireError {
        use keyward_kms::Error as K;
        let (status, aws_type) = match self {
            Self::Kms(e) => {
                let status = match e {
                    K::NotFound(_) => 404,
                    K::Disabled(_) | K::InvalidState(_) | K::AlreadyExists(_) => 409,
                    K::Internal(_) | K::WouldBlock | K::Store(_) => 500,
                    _ => 400,
                };
                (status, e.aws_type())
            }
            Self::Auth(AuthError::MissingAuthenticationToken) => {
                (403, "MissingAuthenticationTokenException")
            }
            Self::Auth(e) => (400, e.aws_type()),
            Self::Serialization(_) => (400, "SerializationException"),
            Self::Validation(_) => (400, "ValidationException"),
            Self::UnknownOperation(_) => (400, "UnknownOperationException"),
            Self::Throttled => (400, "ThrottlingException"),
            Self::AuditUnavailable => (503, "DependencyTimeoutException"),
            // Not a KMS error type (AWS KMS is never sealed): a 503 that the AWS SDKs
            // retry, with a name that says what is wrong.
            Self::Sealed => (503, "ServiceUnavailableException"),
        };
        // Internal failures are logged in full by the caller; the client learns only that
        // it may retry.
        let message = match self {
            Self::Kms(K::Internal(_) | K::WouldBlock | K::Store(_)) => {
                "An internal error occurred; retry the request.".to_owned()
            }
            e => e.to_string(),
        };
        WireError {
            status,
            aws_type,
            message,
        }
    }
}

/// Parses a request body, which must be a JSON object (serde would also take an array).
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let malformed =
        |e: serde_json::Error| ApiError::Serialization(format!("Malformed request body: {e}"));
    let body = if body.is_empty() {
        b"{}".as_slice()
    } else {
        body
    };
    let value: Value = serde_json::from_slice(body).map_err(malformed)?;
    if !value.is_object() {
        return Err(ApiError::Serialization(
            "The request body must be a JSON object".into(),
        ));
    }
    serde_json::from_value(value).map_err(malformed)
}

fn required<T>(v: Option<T>, member: &str) -> Result<T, ApiError> {
    v.ok_or_else(|| {
        ApiError::Validation(format!(
            "1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"
        ))
    })
}

fn blob(v: Option<String>, member: &str) -> Result<Vec<u8>, ApiError> {
    base64::engine::general_purpose::STANDARD
        .decode(required(v, member)?)
        .map_err(|_| ApiError::Serialization(format!("Value for '{member}' is not valid base64")))
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn metadata(m: &KeyMetadata) -> Value {
    let mut v = json!({
        "AWSAccountId": m.aws_account_id,
        "KeyId": m.key_id,
        "Arn": m.arn,
        "CreationDate": m.creation_date,
        "Enabled": m.enabled,
        "Description": m.description,
        "KeyUsage": KeyMetadata::KEY_USAGE,
        "KeyState": m.key_state.as_str(),
        "Origin": KeyMetadata::ORIGIN,
        "KeyManager": KeyMetadata::KEY_MANAGER,
        "CustomerMasterKeySpec": KeyMetadata::KEY_SPEC,
        "KeySpec": KeyMetadata::KEY_SPEC,
        "EncryptionAlgorithms": [ALGORITHM],
        "MultiRegion": false,
        "CurrentKeyMaterialId": m.current_key_material_id,
    });
    if let Some(d) = m.deletion_date {
        v["DeletionDate"] = json!(d);
    }
    if let Some(w) = m.pending_deletion_window_in_days {
        v["PendingDeletionWindowInDays"] = json!(w);
    }
    v
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Req {
    key_id: Option<String>,
    plaintext: Option<String>,
    ciphertext_blob: Option<String>,
    encryption_context: Option<EncryptionContext>,
    source_encryption_context: Option<EncryptionContext>,
    destination_encryption_context: Option<EncryptionContext>,
    source_key_id: Option<String>,
    destination_key_id: Option<String>,
    number_of_bytes: Option<usize>,
    key_spec: Option<String>,
    key_usage: Option<String>,
    description: Option<String>,
    policy: Option<String>,
    policy_name: Option<String>,
    tags: Option<Vec<Tag>>,
    tag_keys: Option<Vec<String>>,
    alias_name: Option<String>,
    target_key_id: Option<String>,
    limit: Option<usize>,
    marker: Option<String>,
    pending_window_in_days: Option<u32>,
    rotation_period_in_days: Option<u32>,
    encryption_algorithm: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Tag {
    tag_key: String,
    tag_value: String,
}

impl Req {
    fn key_id(&self) -> Result<&str, ApiError> {
        required(self.key_id.as_deref(), "keyId")
    }

    fn context(&self) -> EncryptionContext {
        self.encryption_context.clone().unwrap_or_default()
    }

    fn check_algorithm(&self) -> Result<(), ApiError> {
        match self.encryption_algorithm.as_deref() {
            None | Some(ALGORITHM) => Ok(()),
            Some(other) => Err(ApiError::Validation(format!(
                "{other} is not a valid encryption algorithm for a SYMMETRIC_DEFAULT key"
            ))),
        }
    }
}

/// What the audit record of a request says about its key and context, filled in by
/// [`handle_audited`].
#[derive(Debug, Default, Clone)]
pub struct Facts {
    /// The key used (on success) or named (otherwise), as an ARN.
    pub key_arn: Option<String>,
    /// The key version used.
    pub key_version: Option<u32>,
    /// The encryption context of the request (in clear: the caller HMACs the values).
    pub context: EncryptionContext,
}

/// Whether `target` only reads: answered, then audited. Every other operation that is
/// not cryptographic changes state, and is not started while the audit log is failing.
pub fn is_read_only(target: &str) -> bool {
    matches!(
        target.strip_prefix(TARGET_PREFIX),
        Some(
            "DescribeKey"
                | "ListKeys"
                | "ListAliases"
                | "GetKeyPolicy"
                | "ListKeyPolicies"
                | "GetKeyRotationStatus"
                | "ListKeyRotations"
                | "ListResourceTags"
        )
    )
}

/// Whether `target` is a cryptographic operation: answered from memory once its key is
/// warm (see [`keyward_kms::cache_only`]).
pub fn is_cryptographic(target: &str) -> bool {
    matches!(
        target.strip_prefix(TARGET_PREFIX),
        Some(
            "Encrypt"
                | "Decrypt"
                | "ReEncrypt"
                | "GenerateDataKey"
                | "GenerateDataKeyWithoutPlaintext"
                | "GenerateRandom"
        )
    )
}

/// Checks the policy of every key `op` touches for `principal`. Operations on no key
/// (CreateKey, ListKeys, ListAliases, GenerateRandom) are open to every authenticated
/// principal. Missing or malformed members are left for the operation to report.
fn authorize(kms: &Kms, principal: &str, op: &str, r: &Req) -> Result<(), ApiError> {
    let none = EncryptionContext::new();
    let blob_of = |v: &Option<String>| {
        v.as_deref()
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
    };
    match op {
        "CreateKey" | "ListKeys" | "ListAliases" | "GenerateRandom" => {}
        "Decrypt" => {
            if let Some(blob) = blob_of(&r.ciphertext_blob) {
                kms.authorize_blob(principal, "Decrypt", &blob, &r.context())?;
            }
        }
        "ReEncrypt" => {
            if let Some(blob) = blob_of(&r.ciphertext_blob) {
                let ctx = r.source_encryption_context.clone().unwrap_or_default();
                kms.authorize_blob(principal, "ReEncryptFrom", &blob, &ctx)?;
            }
            if let Some(dest) = r.destination_key_id.as_deref() {
                let ctx = r.destination_encryption_context.clone().unwrap_or_default();
                kms.authorize(principal, "ReEncryptTo", dest, &ctx)?;
            }
        }
        "CreateAlias" | "UpdateAlias" => {
            if let Some(target) = r.target_key_id.as_deref() {
                kms.authorize(principal, op, target, &none)?;
            }
        }
        "DeleteAlias" => {
            if let Some(alias) = r.alias_name.as_deref() {
                match kms.authorize(principal, op, alias, &none) {
                    Err(keyward_kms::Error::NotFound(_)) => {} // the operation says so
                    other => other?,
                }
            }
        }
        _ => {
            if let Some(key) = r.key_id.as_deref() {
                let ctx = match op {
                    "Encrypt" | "GenerateDataKey" | "GenerateDataKeyWithoutPlaintext" => {
                        r.context()
                    }
                    _ => none,
                };
                match kms.authorize(principal, op, key, &ctx) {
                    // Management operations refuse aliases with their own error.
                    Err(keyward_kms::Error::NotFound(_)) => {}
                    other => other?,
                }
            }
        }
    }
    Ok(())
}

/// Runs the operation `target` (`TrentService.<Op>`) with `body` for `principal`,
/// returning the response body.
pub fn handle(kms: &Kms, principal: &str, target: &str, body: &[u8]) -> Result<Value, ApiError> {
    handle_audited(kms, principal, target, body, &mut Facts::default())
}

/// [`handle`], noting in `facts` (replaced whole) the key and context for the audit log.
pub fn handle_audited(
    kms: &Kms,
    principal: &str,
    target: &str,
    body: &[u8],
    facts: &mut Facts,
) -> Result<Value, ApiError> {
    *facts = Facts::default();
    let op = target
        .strip_prefix(TARGET_PREFIX)
        .ok_or_else(|| ApiError::UnknownOperation(format!("Unknown target {target}")))?;
    let r: Req = parse(body)?;
    for context in [
        &r.encryption_context,
        &r.source_encryption_context,
        &r.destination_encryption_context,
    ]
    .into_iter()
    .flatten()
    {
        check_context_size(context)?;
    }
    note(kms, op, &r, facts);
    let out = handle_parsed(kms, principal, op, &r, &mut facts.key_version)?;
    let used = out
        .get("KeyId")
        .or_else(|| out.get("KeyMetadata").and_then(|m| m.get("Arn")));
    if let Some(arn) = used
        .and_then(Value::as_str)
        .filter(|a| a.starts_with("arn:"))
    {
        facts.key_arn = Some(arn.to_owned());
    }
    Ok(out)
}

/// Largest encryption context, keys and values together, as in AWS KMS.
pub const MAX_CONTEXT_BYTES: usize = 8192;

fn check_context_size(context: &EncryptionContext) -> Result<(), ApiError> {
    let size: usize = context.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > MAX_CONTEXT_BYTES {
        return Err(ApiError::Validation(format!(
            "The encryption context is {size} bytes; at most {MAX_CONTEXT_BYTES} are allowed"
        )));
    }
    Ok(())
}

/// What the request names, before it runs: the key (its blob's, for Decrypt and
/// ReEncrypt) and the encryption context.
fn note(kms: &Kms, op: &str, r: &Req, facts: &mut Facts) {
    let blob = || {
        r.ciphertext_blob
            .as_deref()
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .and_then(|b| kms.blob_key(&b))
    };
    let (key, version, context) = match op {
        "Decrypt" => match blob() {
            Some((arn, v)) => (Some(arn), Some(v), r.encryption_context.clone()),
            None => (None, None, r.encryption_context.clone()),
        },
        "ReEncrypt" => {
            let (arn, v) = blob().unzip();
            (arn, v, r.source_encryption_context.clone())
        }
        "CreateAlias" | "UpdateAlias" => (
            r.target_key_id.as_deref().and_then(|k| kms.named_arn(k)),
            None,
            None,
        ),
        "DeleteAlias" => (
            r.alias_name.as_deref().and_then(|k| kms.named_arn(k)),
            None,
            None,
        ),
        "Encrypt" | "GenerateDataKey" | "GenerateDataKeyWithoutPlaintext" => (
            r.key_id.as_deref().and_then(|k| kms.named_arn(k)),
            None,
            r.encryption_context.clone(),
        ),
        // Operations that take no context record none.
        _ => (
            r.key_id.as_deref().and_then(|k| kms.named_arn(k)),
            None,
            None,
        ),
    };
    facts.key_arn = key;
    facts.key_version = version;
    facts.context = context.unwrap_or_default();
}

fn handle_parsed(
    kms: &Kms,
    principal: &str,
    op: &str,
    r: &Req,
    version: &mut Option<u32>,
) -> Result<Value, ApiError> {
    authorize(kms, principal, op, r)?;
    let limit = r.limit.unwrap_or(100);
    let out = match op {
        "Encrypt" => {
            r.check_algorithm()?;
            let out = kms.encrypt(
                r.key_id()?,
                &blob(r.plaintext.clone(), "plaintext")?,
                &r.context(),
            )?;
            *version = Some(out.key_version);
            json!({ "CiphertextBlob": b64(&out.ciphertext_blob), "KeyId": out.key_id, "EncryptionAlgorithm": ALGORITHM })
        }
        "Decrypt" => {
            r.check_algorithm()?;
            let ciphertext = blob(r.ciphertext_blob.clone(), "ciphertextBlob")?;
            let out = kms.decrypt(&ciphertext, &r.context(), r.key_id.as_deref())?;
            *version = Some(out.key_version);
            json!({
                "KeyId": out.key_id,
                "Plaintext": b64(&out.plaintext),
                "EncryptionAlgorithm": ALGORITHM,
                "KeyMaterialId": out.key_material_id,
            })
        }
        "ReEncrypt" => {
            let ciphertext = blob(r.ciphertext_blob.clone(), "ciphertextBlob")?;
            let destination = required(r.destination_key_id.as_deref(), "destinationKeyId")?;
            let out = kms.re_encrypt(
                &ciphertext,
                &r.source_encryption_context.clone().unwrap_or_default(),
                r.source_key_id.as_deref(),
                destination,
                &r.destination_encryption_context.clone().unwrap_or_default(),
            )?;
            *version = Some(out.key_version);
            json!({
                "CiphertextBlob": b64(&out.ciphertext_blob),
                "SourceKeyId": out.source_key_id,
                "KeyId": out.key_id,
                "SourceEncryptionAlgorithm": ALGORITHM,
                "DestinationEncryptionAlgorithm": ALGORITHM,
                "SourceKeyMaterialId": out.source_key_material_id,
                "DestinationKeyMaterialId": out.destination_key_material_id,
            })
        }
        "GenerateDataKey" | "GenerateDataKeyWithoutPlaintext" => {
            let n = data_key_length(r.key_spec.as_deref(), r.number_of_bytes)?;
            let out = kms.generate_data_key(r.key_id()?, n, &r.context())?;
            *version = Some(out.key_version);
            let mut v = json!({
                "CiphertextBlob": b64(&out.ciphertext_blob),
                "KeyId": out.key_id,
                "KeyMaterialId": out.key_material_id,
            });
            if op == "GenerateDataKey" {
                v["Plaintext"] = json!(b64(&out.plaintext));
            }
            v
        }
        "GenerateRandom" => {
            let n = required(r.number_of_bytes, "numberOfBytes")?;
            json!({ "Plaintext": b64(&kms.generate_random(n)?) })
        }
        "CreateKey" => {
            match (r.key_spec.as_deref(), r.key_usage.as_deref()) {
                (None | Some("SYMMETRIC_DEFAULT"), None | Some("ENCRYPT_DECRYPT")) => {}
                _ => {
                    return Err(ApiError::Kms(keyward_kms::Error::Unsupported(
                        "keyward supports only SYMMETRIC_DEFAULT keys for ENCRYPT_DECRYPT".into(),
                    )));
                }
            }
            let request = CreateKeyRequest {
                description: r.description.clone().unwrap_or_default(),
                policy: r.policy.clone(),
                tags: r
                    .tags
                    .iter()
                    .flatten()
                    .map(|t| (t.tag_key.clone(), t.tag_value.clone()))
                    .collect(),
                creator: principal.to_owned(),
            };
            json!({ "KeyMetadata": metadata(&kms.create_key(&request)?) })
        }
        "DescribeKey" => json!({ "KeyMetadata": metadata(&kms.describe_key(r.key_id()?)?) }),
        "GetKeyPolicy" => {
            let name = r.policy_name.as_deref().unwrap_or("default");
            json!({ "Policy": kms.get_key_policy(r.key_id()?, name)?, "PolicyName": name })
        }
        "PutKeyPolicy" => empty(kms.put_key_policy(
            r.key_id()?,
            r.policy_name.as_deref().unwrap_or("default"),
            required(r.policy.as_deref(), "policy")?,
        )?),
        "ListKeyPolicies" => {
            kms.describe_key(r.key_id()?)?;
            json!({ "PolicyNames": ["default"], "Truncated": false })
        }
        "ListKeys" => {
            let page = kms.list_keys(limit, r.marker.as_deref())?;
            let keys: Vec<Value> = page
                .items
                .iter()
                .map(|k| json!({ "KeyId": k.key_id, "KeyArn": k.key_arn }))
                .collect();
            paged(json!({ "Keys": keys }), page.next_marker)
        }
        "EnableKey" => empty(kms.enable_key(r.key_id()?)?),
        "DisableKey" => empty(kms.disable_key(r.key_id()?)?),
        "UpdateKeyDescription" => empty(kms.update_key_description(
            r.key_id()?,
            required(r.description.as_deref(), "description")?,
        )?),
        "ScheduleKeyDeletion" => {
            let s = kms.schedule_key_deletion(r.key_id()?, r.pending_window_in_days)?;
            json!({
                "KeyId": s.key_id,
                "DeletionDate": s.deletion_date,
                "KeyState": "PendingDeletion",
                "PendingWindowInDays": s.pending_window_in_days,
            })
        }
        "CancelKeyDeletion" => json!({ "KeyId": kms.cancel_key_deletion(r.key_id()?)? }),
        "EnableKeyRotation" => {
            empty(kms.enable_key_rotation(r.key_id()?, r.rotation_period_in_days)?)
        }
        "DisableKeyRotation" => empty(kms.disable_key_rotation(r.key_id()?)?),
        "GetKeyRotationStatus" => {
            let s = kms.get_key_rotation_status(r.key_id()?)?;
            let mut v = json!({ "KeyRotationEnabled": s.key_rotation_enabled, "KeyId": s.key_id });
            if let Some(p) = s.rotation_period_in_days {
                v["RotationPeriodInDays"] = json!(p);
            }
            if let Some(d) = s.next_rotation_date.filter(|_| s.key_rotation_enabled) {
                v["NextRotationDate"] = json!(d);
            }
            v
        }
        "RotateKeyOnDemand" => json!({ "KeyId": kms.rotate_key_on_demand(r.key_id()?)? }),
        "ListKeyRotations" => {
            let rotations: Vec<Value> = kms
                .list_key_rotations(r.key_id()?)?
                .iter()
                .map(|x| {
                    json!({
                        "KeyId": x.key_id,
                        "KeyMaterialId": x.key_material_id,
                        "RotationDate": x.rotation_date,
                        "RotationType": x.rotation_type.as_str(),
                    })
                })
                .collect();
            json!({ "Rotations": rotations, "Truncated": false })
        }
        "CreateAlias" => empty(kms.create_alias(
            required(r.alias_name.as_deref(), "aliasName")?,
            required(r.target_key_id.as_deref(), "targetKeyId")?,
        )?),
        "UpdateAlias" => empty(kms.update_alias(
            required(r.alias_name.as_deref(), "aliasName")?,
            required(r.target_key_id.as_deref(), "targetKeyId")?,
        )?),
        "DeleteAlias" => empty(kms.delete_alias(required(r.alias_name.as_deref(), "aliasName")?)?),
        "ListAliases" => {
            let page = kms.list_aliases(r.key_id.as_deref(), limit, r.marker.as_deref())?;
            let aliases: Vec<Value> = page
                .items
                .iter()
                .map(|a| json!({ "AliasName": a.alias_name, "AliasArn": a.alias_arn, "TargetKeyId": a.target_key_id }))
                .collect();
            paged(json!({ "Aliases": aliases }), page.next_marker)
        }
        "TagResource" => {
            let tags: Vec<(String, String)> = required(r.tags.as_ref(), "tags")?
                .iter()
                .map(|t| (t.tag_key.clone(), t.tag_value.clone()))
                .collect();
            empty(kms.tag_resource(r.key_id()?, &tags)?)
        }
        "UntagResource" => {
            empty(kms.untag_resource(r.key_id()?, required(r.tag_keys.as_deref(), "tagKeys")?)?)
        }
        "ListResourceTags" => {
            let tags: Vec<Value> = kms
                .list_resource_tags(r.key_id()?)?
                .into_iter()
                .map(|(k, v)| json!({ "TagKey": k, "TagValue": v }))
                .collect();
            json!({ "Tags": tags, "Truncated": false })
        }
        other => {
            return Err(ApiError::UnknownOperation(format!(
                "Unknown operation {other}"
            )));
        }
    };
    Ok(out)
}

fn empty((): ()) -> Value {
    json!({})
}

fn paged(mut v: Value, next_marker: Option<String>) -> Value {
    v["Truncated"] = json!(next_marker.is_some());
    if let Some(m) = next_marker {
        v["NextMarker"] = json!(m);
    }
    v
}
