//! What a backup holds, as its payload: the root key (if carried) and the store's
//! snapshot as JSON, with bytes in base64. Reading checks the structure (every version,
//! alias and tag belongs to a key in the backup; no record twice; states and rotation
//! types known) so that `keyward backup verify` can vouch for a file without restoring it.

use std::collections::HashSet;
use std::io::Write as _;

use base64::Engine as _;
use keyward_store::{
    AccessKey, Alias, AuditRow, CertificateRecord, KeyRecord, KeyState, RotationType, Snapshot,
    VersionRecord,
};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::format::{BackupError, MAX_PAYLOAD, SecretBuf};

/// A backup's contents.
pub(crate) struct Contents {
    /// The root key (`root.key`'s 32 bytes), unless the backup was made without it.
    pub(crate) root_key: Option<Zeroizing<[u8; 32]>>,
    /// When the snapshot was taken, ms since the Unix epoch.
    pub(crate) created_ms: i64,
    /// The keyward that wrote it.
    pub(crate) keyward_version: String,
    /// The store's records.
    pub(crate) snapshot: Snapshot,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(s: &str) -> Result<Vec<u8>, BackupError> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|_| BackupError::Contents("bad base64"))
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    created_ms: i64,
    keyward_version: String,
    meta: Vec<(String, String)>,
    keys: Vec<Key>,
    versions: Vec<Version>,
    aliases: Vec<(String, String, i64, i64)>,
    tags: Vec<(String, String, String)>,
    access_keys: Vec<(String, String, String, i64)>,
    certificates: Vec<Cert>,
    audit_tail: Option<(u64, i64, String)>,
    audit_checkpoint: Option<(u64, String)>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Key {
    key_id: String,
    created_at: i64,
    description: String,
    state: String,
    deletion_date: Option<i64>,
    pending_window_days: Option<u32>,
    rotation_period_days: Option<u32>,
    next_rotation: Option<i64>,
    current_version: u32,
    on_demand_rotations: u32,
    policy: Option<String>,
    destroyed: bool,
    generation: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Version {
    key_id: String,
    version: u32,
    material_id: String,
    wrapped: String,
    created_at: i64,
    rotation: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cert {
    serial: String,
    subject: String,
    not_before: i64,
    not_after: i64,
    issued_at: i64,
    revoked_at: Option<i64>,
    der: String,
}

fn to_doc(c: &Contents) -> Doc {
    let s = &c.snapshot;
    Doc {
        created_ms: c.created_ms,
        keyward_version: c.keyward_version.clone(),
        meta: s.meta.iter().map(|(n, v)| (n.clone(), b64(v))).collect(),
        keys: s
            .keys
            .iter()
            .map(|k| Key {
                key_id: k.key_id.clone(),
                created_at: k.created_at,
                description: k.description.clone(),
                state: k.state.as_str().to_owned(),
                deletion_date: k.deletion_date,
                pending_window_days: k.pending_window_days,
                rotation_period_days: k.rotation_period_days,
                next_rotation: k.next_rotation,
                current_version: k.current_version,
                on_demand_rotations: k.on_demand_rotations,
                policy: k.policy.clone(),
                destroyed: k.destroyed,
                generation: k.generation,
            })
            .collect(),
        versions: s
            .versions
            .iter()
            .map(|v| Version {
                key_id: v.key_id.clone(),
                version: v.version,
                material_id: v.material_id.clone(),
                wrapped: b64(&v.wrapped),
                created_at: v.created_at,
                rotation: v.rotation.map(|r| r.as_str().to_owned()),
            })
            .collect(),
        aliases: s
            .aliases
            .iter()
            .map(|a| (a.name.clone(), a.key_id.clone(), a.created_at, a.updated_at))
            .collect(),
        tags: s.tags.clone(),
        access_keys: s
            .access_keys
            .iter()
            .map(|a| {
                (
                    a.access_key_id.clone(),
                    a.principal.clone(),
                    b64(&a.wrapped),
                    a.created_at,
                )
            })
            .collect(),
        certificates: s
            .certificates
            .iter()
            .map(|c| Cert {
                serial: c.serial.clone(),
                subject: c.subject.clone(),
                not_before: c.not_before,
                not_after: c.not_after,
                issued_at: c.issued_at,
                revoked_at: c.revoked_at,
                der: b64(&c.der),
            })
            .collect(),
        audit_tail: s
            .audit_tail
            .as_ref()
            .map(|r| (r.seq, r.time_ms, r.line.clone())),
        audit_checkpoint: s.audit_checkpoint.as_ref().map(|r| (r.seq, r.line.clone())),
    }
}

fn from_doc(d: Doc) -> Result<Snapshot, BackupError> {
    let keys = d
        .keys
        .into_iter()
        .map(|k| {
            Ok(KeyRecord {
                state: KeyState::parse(&k.state)
                    .ok_or(BackupError::Contents("an unknown key state"))?,
                key_id: k.key_id,
                created_at: k.created_at,
                description: k.description,
                deletion_date: k.deletion_date,
                pending_window_days: k.pending_window_days,
                rotation_period_days: k.rotation_period_days,
                next_rotation: k.next_rotation,
                current_version: k.current_version,
                on_demand_rotations: k.on_demand_rotations,
                policy: k.policy,
                destroyed: k.destroyed,
                generation: k.generation,
            })
        })
        .collect::<Result<Vec<_>, BackupError>>()?;
    let versions = d
        .versions
        .into_iter()
        .map(|v| {
            let rotation = match v.rotation.as_deref() {
                None => None,
                Some(r) => Some(
                    RotationType::parse(r)
                        .ok_or(BackupError::Contents("an unknown rotation type"))?,
                ),
            };
            Ok(VersionRecord {
                wrapped: unb64(&v.wrapped)?,
                key_id: v.key_id,
                version: v.version,
                material_id: v.material_id,
                created_at: v.created_at,
                rotation,
            })
        })
        .collect::<Result<Vec<_>, BackupError>>()?;
    Ok(Snapshot {
        meta: d
            .meta
            .into_iter()
            .map(|(n, v)| Ok((n, unb64(&v)?)))
            .collect::<Result<_, BackupError>>()?,
        keys,
        versions,
        aliases: d
            .aliases
            .into_iter()
            .map(|(name, key_id, created_at, updated_at)| Alias {
                name,
                key_id,
                created_at,
                updated_at,
            })
            .collect(),
        tags: d.tags,
        access_keys: d
            .access_keys
            .into_iter()
            .map(|(access_key_id, principal, wrapped, created_at)| {
                Ok(AccessKey {
                    wrapped: unb64(&wrapped)?,
                    access_key_id,
                    principal,
                    created_at,
                })
            })
            .collect::<Result<_, BackupError>>()?,
        certificates: d
            .certificates
            .into_iter()
            .map(|c| {
                Ok(CertificateRecord {
                    der: unb64(&c.der)?,
                    serial: c.serial,
                    subject: c.subject,
                    not_before: c.not_before,
                    not_after: c.not_after,
                    issued_at: c.issued_at,
                    revoked_at: c.revoked_at,
                })
            })
            .collect::<Result<_, BackupError>>()?,
        audit_tail: d
            .audit_tail
            .map(|(seq, time_ms, line)| AuditRow { seq, time_ms, line }),
        audit_checkpoint: d.audit_checkpoint.map(|(seq, line)| AuditRow {
            seq,
            time_ms: 0,
            line,
        }),
    })
}

/// The payload for `contents`: the root-key flag, the root key, the JSON.
pub(crate) fn encode(contents: &Contents) -> Result<SecretBuf, BackupError> {
    let json = serde_json::to_vec(&to_doc(contents))
        .map_err(|_| BackupError::Contents("cannot serialize the snapshot"))?;
    let mut out = SecretBuf::new(33 + json.len(), MAX_PAYLOAD);
    let written = match &contents.root_key {
        Some(key) => out.write_all(&[1]).and_then(|()| out.write_all(&key[..])),
        None => out.write_all(&[0]),
    };
    written
        .and_then(|()| out.write_all(&json))
        .map_err(|_| BackupError::TooLarge)?;
    Ok(out)
}

/// Reads a payload and checks its structure.
pub(crate) fn decode(payload: &[u8]) -> Result<Contents, BackupError> {
    let bad = BackupError::Contents;
    let (&flag, rest) = payload.split_first().ok_or(bad("empty"))?;
    let (root_key, json) = match flag {
        0 => (None, rest),
        1 => {
            let (key, json) = rest.split_at_checked(32).ok_or(bad("short root key"))?;
            let mut k = Zeroizing::new([0u8; 32]);
            k.copy_from_slice(key);
            (Some(k), json)
        }
        _ => return Err(bad("bad root-key flag")),
    };
    let doc: Doc = serde_json::from_slice(json).map_err(|_| bad("the snapshot is not valid"))?;
    let created_ms = doc.created_ms;
    let keyward_version = doc.keyward_version.clone();
    let snapshot = from_doc(doc)?;
    check(&snapshot)?;
    Ok(Contents {
        root_key,
        created_ms,
        keyward_version,
        snapshot,
    })
}

/// Every version, alias and tag belongs to a key of the backup; no record is there
/// twice; a live key has its current version.
fn check(s: &Snapshot) -> Result<(), BackupError> {
    let bad = BackupError::Contents;
    let unique = |mut items: Vec<String>| {
        let n = items.len();
        items.sort();
        items.dedup();
        items.len() == n
    };
    let keys: HashSet<&str> = s.keys.iter().map(|k| k.key_id.as_str()).collect();
    if keys.len() != s.keys.len() {
        return Err(bad("a key twice"));
    }
    let versions: HashSet<(&str, u32)> = s
        .versions
        .iter()
        .map(|v| (v.key_id.as_str(), v.version))
        .collect();
    if versions.len() != s.versions.len() {
        return Err(bad("a key version twice"));
    }
    if s.versions.iter().any(|v| !keys.contains(v.key_id.as_str())) {
        return Err(bad("a version of a key that is not in the backup"));
    }
    if s.keys
        .iter()
        .any(|k| !k.destroyed && !versions.contains(&(k.key_id.as_str(), k.current_version)))
    {
        return Err(bad("a key without its current version"));
    }
    if s.aliases.iter().any(|a| !keys.contains(a.key_id.as_str()))
        || s.tags.iter().any(|(k, _, _)| !keys.contains(k.as_str()))
    {
        return Err(bad("an alias or tag of a key that is not in the backup"));
    }
    if !unique(s.aliases.iter().map(|a| a.name.clone()).collect())
        || !unique(s.tags.iter().map(|(k, t, _)| format!("{k}\0{t}")).collect())
        || !unique(s.meta.iter().map(|(n, _)| n.clone()).collect())
        || !unique(
            s.access_keys
                .iter()
                .map(|a| a.access_key_id.clone())
                .collect(),
        )
        || !unique(s.certificates.iter().map(|c| c.serial.clone()).collect())
    {
        return Err(bad("a record twice"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn contents() -> Contents {
        let key = KeyRecord {
            key_id: "k".into(),
            created_at: 1,
            description: "d".into(),
            state: KeyState::Enabled,
            deletion_date: None,
            pending_window_days: None,
            rotation_period_days: Some(365),
            next_rotation: Some(9),
            current_version: 2,
            on_demand_rotations: 1,
            policy: Some("{}".into()),
            destroyed: false,
            generation: 3,
        };
        let version = |v: u32| VersionRecord {
            key_id: "k".into(),
            version: v,
            material_id: format!("{v:064x}"),
            wrapped: vec![v as u8; 45],
            created_at: 2,
            rotation: (v > 1).then_some(RotationType::OnDemand),
        };
        Contents {
            root_key: Some(Zeroizing::new([9; 32])),
            created_ms: 5,
            keyward_version: "0.1.0".into(),
            snapshot: Snapshot {
                meta: vec![("root-key-check".into(), vec![1, 2, 3])],
                keys: vec![key],
                versions: vec![version(1), version(2)],
                aliases: vec![Alias {
                    name: "alias/a".into(),
                    key_id: "k".into(),
                    created_at: 1,
                    updated_at: 2,
                }],
                tags: vec![("k".into(), "t".into(), "v".into())],
                access_keys: vec![AccessKey {
                    access_key_id: "KWAK".into(),
                    principal: "admin".into(),
                    wrapped: vec![4; 60],
                    created_at: 1,
                }],
                certificates: vec![],
                audit_tail: Some(AuditRow {
                    seq: 7,
                    time_ms: 3,
                    line: "{}".into(),
                }),
                audit_checkpoint: None,
            },
        }
    }

    #[test]
    fn contents_round_trip() {
        let c = contents();
        let payload = encode(&c).unwrap();
        let back = decode(&payload.bytes).unwrap();
        assert_eq!(back.snapshot, c.snapshot);
        assert_eq!(back.root_key.as_deref(), c.root_key.as_deref());
        let mut without = contents();
        without.root_key = None;
        assert!(
            decode(&encode(&without).unwrap().bytes)
                .unwrap()
                .root_key
                .is_none()
        );
    }

    #[test]
    fn inconsistent_contents_are_refused() {
        let mut orphan = contents();
        orphan.snapshot.versions[0].key_id = "other".into();
        let mut twice = contents();
        twice.snapshot.meta.push(twice.snapshot.meta[0].clone());
        let mut missing = contents();
        missing.snapshot.versions.pop();
        for c in [orphan, twice, missing] {
            assert!(matches!(
                decode(&encode(&c).unwrap().bytes),
                Err(BackupError::Contents(_))
            ));
        }
        assert!(decode(b"").is_err());
        assert!(decode(b"\x02{}").is_err());
        assert!(decode(b"\x01short").is_err());
        assert!(decode(b"\x00{\"nope\":1}").is_err());
    }
}
