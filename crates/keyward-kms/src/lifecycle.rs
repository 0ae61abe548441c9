//! Key management: creation, description, states, deletion, rotation, aliases and tags,
//! and the scheduled work that carries out rotations and deletions when they fall due.

use keyward_store::{Alias, KeyRecord, KeyState, RotationType, StoreError, VersionRecord};
use zeroize::Zeroizing;

use crate::ids::{check_alias_name, new_key_id};
use crate::kms::random;
use crate::{DAY, Error, KeyMetadata, Kms};

/// Most on-demand rotations a key may have, as in AWS KMS.
const MAX_ON_DEMAND_ROTATIONS: u32 = 25;

/// CreateKey's optional parameters.
#[derive(Debug, Clone, Default)]
pub struct CreateKeyRequest {
    /// Free text, up to 8192 characters.
    pub description: String,
    /// A key policy document; without one the key gets
    /// [`crate::policy::default_policy`] with `creator` as administrator and user.
    pub policy: Option<String>,
    /// Tags to set at creation.
    pub tags: Vec<(String, String)>,
    /// The principal creating the key.
    pub creator: String,
}

/// One page of a listing, and the marker that fetches the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The entries.
    pub items: Vec<T>,
    /// Pass as `marker` for the next page; `None` on the last page.
    pub next_marker: Option<String>,
}

/// One entry of ListKeys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyListEntry {
    /// The key id.
    pub key_id: String,
    /// The key ARN.
    pub key_arn: String,
}

/// One entry of ListAliases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasListEntry {
    /// `alias/...`.
    pub alias_name: String,
    /// The alias ARN.
    pub alias_arn: String,
    /// The key id the alias names.
    pub target_key_id: String,
}

/// ScheduleKeyDeletion's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletionScheduled {
    /// The key ARN.
    pub key_id: String,
    /// When the key will be destroyed, Unix seconds.
    pub deletion_date: i64,
    /// The window chosen.
    pub pending_window_in_days: u32,
}

/// GetKeyRotationStatus's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationStatus {
    /// The key ARN.
    pub key_id: String,
    /// Whether automatic rotation is on (always false while deletion is pending).
    pub key_rotation_enabled: bool,
    /// The rotation period.
    pub rotation_period_in_days: Option<u32>,
    /// When automatic rotation next falls due.
    pub next_rotation_date: Option<i64>,
}

/// One entry of ListKeyRotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRotation {
    /// The key ARN.
    pub key_id: String,
    /// The new version's KeyMaterialId.
    pub key_material_id: String,
    /// When the rotation happened.
    pub rotation_date: i64,
    /// Automatic or on demand.
    pub rotation_type: RotationType,
}

impl Kms {
    fn new_version(
        &self,
        key_id: &str,
        version: u32,
        rotation: Option<RotationType>,
    ) -> Result<VersionRecord, Error> {
        let material = random(32, "material")?;
        let wrapped = self
            .root
            .wrap(&material, &Self::wrap_context(key_id, version))?;
        let id = random(32, "material id")?;
        drop(material);
        Ok(VersionRecord {
            key_id: key_id.to_owned(),
            version,
            material_id: id.iter().map(|b| format!("{b:02x}")).collect(),
            wrapped,
            created_at: self.clock.now(),
            rotation,
        })
    }

    /// CreateKey: a new enabled symmetric key with fresh material.
    pub fn create_key(&self, request: &CreateKeyRequest) -> Result<KeyMetadata, Error> {
        check_description(&request.description)?;
        let key_id = new_key_id()?;
        let policy = match &request.policy {
            Some(p) => {
                crate::policy::Policy::parse(p, &self.arn(&key_id))?;
                p.clone()
            }
            None => crate::policy::default_policy(&[&request.creator], &[&request.creator]),
        };
        let record = KeyRecord {
            key_id: key_id.clone(),
            created_at: self.clock.now(),
            description: request.description.clone(),
            state: KeyState::Enabled,
            deletion_date: None,
            pending_window_days: None,
            rotation_period_days: None,
            next_rotation: None,
            current_version: 1,
            on_demand_rotations: 0,
            policy: Some(policy),
            destroyed: false,
            generation: 1,
        };
        let first = self.new_version(&key_id, 1, None)?;
        let epoch = self.epoch();
        self.store.create_key(&record, &first)?;
        if !request.tags.is_empty() {
            self.store.tag(&key_id, &request.tags)?;
        }
        self.cache(record.clone(), epoch);
        Ok(self.metadata(&record, first.material_id))
    }

    fn metadata(&self, k: &KeyRecord, current_key_material_id: String) -> KeyMetadata {
        KeyMetadata {
            key_id: k.key_id.clone(),
            arn: self.arn(&k.key_id),
            aws_account_id: self.config.account.clone(),
            creation_date: k.created_at,
            description: k.description.clone(),
            enabled: k.state == KeyState::Enabled,
            key_state: k.state,
            deletion_date: k.deletion_date,
            pending_deletion_window_in_days: k.pending_window_days,
            current_key_material_id,
        }
    }

    /// DescribeKey: works in every state.
    pub fn describe_key(&self, key_ref: &str) -> Result<KeyMetadata, Error> {
        let k = self.resolve(key_ref)?;
        let current = self
            .store
            .version(&k.key_id, k.current_version)?
            .ok_or(Error::Internal("current key version missing"))?;
        Ok(self.metadata(&k, current.material_id))
    }

    /// ListKeys: up to `limit` (1 to 1000) keys after `marker`.
    pub fn list_keys(
        &self,
        limit: usize,
        marker: Option<&str>,
    ) -> Result<Page<KeyListEntry>, Error> {
        let limit = check_limit(limit)?;
        let keys = self.store.keys(marker, limit + 1)?;
        Ok(page(
            keys,
            limit,
            |k| k.key_id.clone(),
            |k| KeyListEntry {
                key_arn: self.arn(&k.key_id),
                key_id: k.key_id,
            },
        ))
    }

    /// Refuses management of a key pending deletion.
    fn not_pending(&self, k: &KeyRecord) -> Result<(), Error> {
        if k.state == KeyState::PendingDeletion {
            Err(self.pending_deletion(k))
        } else {
            Ok(())
        }
    }

    /// EnableKey.
    pub fn enable_key(&self, key_ref: &str) -> Result<(), Error> {
        let id = self.resolve_key(key_ref)?.key_id;
        self.update(&id, |k| {
            self.not_pending(k)?;
            k.state = KeyState::Enabled;
            Ok(())
        })?;
        Ok(())
    }

    /// DisableKey: takes effect at once for every operation.
    pub fn disable_key(&self, key_ref: &str) -> Result<(), Error> {
        let id = self.resolve_key(key_ref)?.key_id;
        self.update(&id, |k| {
            self.not_pending(k)?;
            k.state = KeyState::Disabled;
            Ok(())
        })?;
        Ok(())
    }

    /// UpdateKeyDescription.
    /// GetKeyPolicy: the key's policy document (`default` is the only policy name).
    pub fn get_key_policy(&self, key_ref: &str, policy_name: &str) -> Result<String, Error> {
        check_policy_name(policy_name)?;
        let k = self.resolve_key(key_ref)?;
        Ok(k.policy.clone().unwrap_or_else(|| {
            // Keys made before policies were kept: their users are whoever may call.
            crate::policy::default_policy(&["*"], &["*"])
        }))
    }

    /// PutKeyPolicy: replaces the key's policy after checking it.
    pub fn put_key_policy(
        &self,
        key_ref: &str,
        policy_name: &str,
        policy: &str,
    ) -> Result<(), Error> {
        check_policy_name(policy_name)?;
        let id = self.resolve_key(key_ref)?.key_id;
        crate::policy::Policy::parse(policy, &self.arn(&id))?;
        self.update(&id, |k| {
            k.policy = Some(policy.to_owned());
            Ok(())
        })?;
        Ok(())
    }

    /// UpdateKeyDescription.
    pub fn update_key_description(&self, key_ref: &str, description: &str) -> Result<(), Error> {
        check_description(description)?;
        let id = self.resolve_key(key_ref)?.key_id;
        self.update(&id, |k| {
            self.not_pending(k)?;
            k.description = description.to_owned();
            Ok(())
        })?;
        Ok(())
    }

    /// ScheduleKeyDeletion: 7 to 30 days, 30 by default. The key is refused for every
    /// cryptographic operation at once and destroyed when the window ends.
    pub fn schedule_key_deletion(
        &self,
        key_ref: &str,
        window_days: Option<u32>,
    ) -> Result<DeletionScheduled, Error> {
        let days = window_days.unwrap_or(30);
        if !(7..=30).contains(&days) {
            return Err(Error::Validation(format!(
                "1 validation error detected: Value '{days}' at 'pendingWindowInDays' failed to satisfy \
                 constraint: Member must have value between 7 and 30"
            )));
        }
        let id = self.resolve_key(key_ref)?.key_id;
        let deletion_date = self.clock.now() + i64::from(days) * DAY;
        self.update(&id, |k| {
            self.not_pending(k)?;
            k.state = KeyState::PendingDeletion;
            k.deletion_date = Some(deletion_date);
            k.pending_window_days = Some(days);
            Ok(())
        })?;
        Ok(DeletionScheduled {
            key_id: self.arn(&id),
            deletion_date,
            pending_window_in_days: days,
        })
    }

    /// CancelKeyDeletion: the key comes back Disabled.
    pub fn cancel_key_deletion(&self, key_ref: &str) -> Result<String, Error> {
        let id = self.resolve_key(key_ref)?.key_id;
        self.update(&id, |k| {
            if k.state != KeyState::PendingDeletion {
                return Err(Error::InvalidState(format!(
                    "{} is not pending deletion.",
                    self.arn(&k.key_id)
                )));
            }
            k.state = KeyState::Disabled;
            k.deletion_date = None;
            k.pending_window_days = None;
            Ok(())
        })?;
        Ok(self.arn(&id))
    }

    /// Refuses rotation changes on a key that is not Enabled.
    fn check_rotatable(&self, k: &KeyRecord) -> Result<(), Error> {
        self.check_usable(k)
    }

    /// EnableKeyRotation: every `period_days` (90 to 2560, 365 by default).
    pub fn enable_key_rotation(
        &self,
        key_ref: &str,
        period_days: Option<u32>,
    ) -> Result<(), Error> {
        let days = period_days.unwrap_or(365);
        if !(90..=2560).contains(&days) {
            return Err(Error::Validation(format!(
                "1 validation error detected: Value '{days}' at 'rotationPeriodInDays' failed to satisfy \
                 constraint: Member must have value between 90 and 2560"
            )));
        }
        let id = self.resolve_key(key_ref)?.key_id;
        let next = self.clock.now() + i64::from(days) * DAY;
        self.update(&id, |k| {
            self.check_rotatable(k)?;
            k.rotation_period_days = Some(days);
            k.next_rotation = Some(next);
            Ok(())
        })?;
        Ok(())
    }

    /// DisableKeyRotation.
    pub fn disable_key_rotation(&self, key_ref: &str) -> Result<(), Error> {
        let id = self.resolve_key(key_ref)?.key_id;
        self.update(&id, |k| {
            self.check_rotatable(k)?;
            k.rotation_period_days = None;
            k.next_rotation = None;
            Ok(())
        })?;
        Ok(())
    }

    /// GetKeyRotationStatus: works in every state; reads disabled while deletion is pending.
    pub fn get_key_rotation_status(&self, key_ref: &str) -> Result<RotationStatus, Error> {
        let k = self.resolve_key(key_ref)?;
        Ok(RotationStatus {
            key_id: self.arn(&k.key_id),
            key_rotation_enabled: k.rotation_period_days.is_some()
                && k.state != KeyState::PendingDeletion,
            rotation_period_in_days: k.rotation_period_days,
            next_rotation_date: k.next_rotation,
        })
    }

    /// RotateKeyOnDemand: new material now; at most 25 times per key. Retries on
    /// concurrent updates.
    pub fn rotate_key_on_demand(&self, key_ref: &str) -> Result<String, Error> {
        let id = self.resolve_key(key_ref)?.key_id;
        self.update_or_rotate(&id, |k| {
            self.check_rotatable(k)?;
            if k.on_demand_rotations >= MAX_ON_DEMAND_ROTATIONS {
                return Err(Error::LimitExceeded(format!(
                    "{} has reached the limit of {MAX_ON_DEMAND_ROTATIONS} on-demand rotations",
                    self.arn(&id)
                )));
            }
            k.on_demand_rotations += 1;
            k.current_version += 1;
            self.new_version(&id, k.current_version, Some(RotationType::OnDemand))
                .map(Some)
        })?;
        Ok(self.arn(&id))
    }

    /// ListKeyRotations: every rotation, oldest first.
    pub fn list_key_rotations(&self, key_ref: &str) -> Result<Vec<KeyRotation>, Error> {
        let k = self.resolve_key(key_ref)?;
        let arn = self.arn(&k.key_id);
        Ok(self
            .store
            .versions(&k.key_id)?
            .into_iter()
            .filter_map(|v| {
                v.rotation.map(|rotation_type| KeyRotation {
                    key_id: arn.clone(),
                    key_material_id: v.material_id,
                    rotation_date: v.created_at,
                    rotation_type,
                })
            })
            .collect())
    }

    /// Carries out what has fallen due: automatic rotations of enabled keys, and the
    /// destruction of keys whose deletion window has ended. Returns how many of each this
    /// call did. The server calls this periodically; tests call it after moving the clock.
    ///
    /// Each action is written only if the key is still as it was read (its generation),
    /// so nodes that run this at the same time over one database do each action exactly
    /// once between them, and a key cancelled or re-enabled in between is left alone.
    pub fn run_due_work(&self) -> Result<(usize, usize), Error> {
        let now = self.clock.now();
        let (mut rotated, mut destroyed) = (0, 0);
        let mut after: Option<String> = None;
        loop {
            let page = self.store.keys(after.as_deref(), 1000)?;
            let Some(last) = page.last() else { break };
            after = Some(last.key_id.clone());
            for k in page {
                match k.state {
                    KeyState::PendingDeletion if k.deletion_date.is_some_and(|d| d <= now) => {
                        destroyed += usize::from(self.destroy(&k)?);
                    }
                    KeyState::Enabled if k.next_rotation.is_some_and(|d| d <= now) => {
                        rotated += usize::from(self.rotate_due(k)?);
                    }
                    _ => {}
                }
            }
        }
        Ok((rotated, destroyed))
    }

    /// The automatic rotation of `k` as read; false if it changed since (another node
    /// rotated it, or it was disabled).
    fn rotate_due(&self, mut k: KeyRecord) -> Result<bool, Error> {
        let period = i64::from(k.rotation_period_days.unwrap_or(365));
        k.next_rotation = Some(self.clock.now() + period * DAY);
        k.current_version += 1;
        k.generation += 1;
        let version =
            self.new_version(&k.key_id, k.current_version, Some(RotationType::Automatic))?;
        let epoch = self.epoch();
        match self.store.rotate_key(&k, &version) {
            Ok(()) => {
                self.cache(k, epoch);
                Ok(true)
            }
            Err(StoreError::Conflict | StoreError::NotFound) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Destroys a key's material for good (crypto-shredding), if it is still as read;
    /// false if it changed since (deletion cancelled, or destroyed by another node).
    fn destroy(&self, k: &KeyRecord) -> Result<bool, Error> {
        let epoch = self.epoch();
        match self.store.destroy_key(&k.key_id, k.generation) {
            Ok(()) => {}
            Err(StoreError::Conflict | StoreError::NotFound) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        self.forget_aliases(None);
        if let Some(k) = self.store.key(&k.key_id)? {
            self.cache(k, epoch);
        }
        self.forget_material(&k.key_id);
        Ok(true)
    }

    // ---- aliases ----

    /// CreateAlias.
    pub fn create_alias(&self, name: &str, target_key_ref: &str) -> Result<(), Error> {
        check_alias_name(name)?;
        let k = self.resolve_key(target_key_ref)?;
        self.not_pending(&k)?;
        let now = self.clock.now();
        let alias = Alias {
            name: name.to_owned(),
            key_id: k.key_id,
            created_at: now,
            updated_at: now,
        };
        self.store.create_alias(&alias).map_err(|e| match e {
            StoreError::AlreadyExists => Error::AlreadyExists(format!(
                "An alias with the name {} already exists",
                self.config.alias_arn(name)
            )),
            e => e.into(),
        })
    }

    /// UpdateAlias: points an alias at another key.
    pub fn update_alias(&self, name: &str, target_key_ref: &str) -> Result<(), Error> {
        check_alias_name(name)?;
        let k = self.resolve_key(target_key_ref)?;
        self.not_pending(&k)?;
        let updated = self
            .store
            .update_alias(name, &k.key_id, self.clock.now())
            .map_err(|e| self.alias_error(name, e));
        self.forget_aliases(Some(name));
        updated
    }

    /// DeleteAlias: works whatever the state of its key.
    pub fn delete_alias(&self, name: &str) -> Result<(), Error> {
        check_alias_name(name)?;
        let deleted = self
            .store
            .delete_alias(name)
            .map_err(|e| self.alias_error(name, e));
        self.forget_aliases(Some(name));
        deleted
    }

    fn alias_error(&self, name: &str, e: StoreError) -> Error {
        match e {
            StoreError::NotFound => Error::NotFound(format!(
                "Alias {} is not found.",
                self.config.alias_arn(name)
            )),
            e => e.into(),
        }
    }

    /// ListAliases: up to `limit` aliases after `marker`, optionally only one key's.
    pub fn list_aliases(
        &self,
        key_ref: Option<&str>,
        limit: usize,
        marker: Option<&str>,
    ) -> Result<Page<AliasListEntry>, Error> {
        let limit = check_limit(limit)?;
        let key_id = key_ref
            .map(|r| self.resolve_key(r).map(|k| k.key_id))
            .transpose()?;
        let aliases = self.store.aliases(key_id.as_deref(), marker, limit + 1)?;
        Ok(page(
            aliases,
            limit,
            |a| a.name.clone(),
            |a| AliasListEntry {
                alias_arn: self.config.alias_arn(&a.name),
                alias_name: a.name,
                target_key_id: a.key_id,
            },
        ))
    }

    // ---- tags ----

    /// TagResource: tag keys 1-128 characters, values 0-256.
    pub fn tag_resource(&self, key_ref: &str, tags: &[(String, String)]) -> Result<(), Error> {
        for (k, v) in tags {
            if k.is_empty()
                || k.chars().count() > 128
                || v.chars().count() > 256
                || k.contains('\0')
                || v.contains('\0')
            {
                return Err(Error::Validation(
                    "Tag keys must be 1 to 128 characters and values 0 to 256, without NUL".into(),
                ));
            }
        }
        let k = self.resolve_key(key_ref)?;
        self.not_pending(&k)?;
        Ok(self.store.tag(&k.key_id, tags)?)
    }

    /// UntagResource.
    pub fn untag_resource(&self, key_ref: &str, tag_keys: &[String]) -> Result<(), Error> {
        let k = self.resolve_key(key_ref)?;
        self.not_pending(&k)?;
        Ok(self.store.untag(&k.key_id, tag_keys)?)
    }

    /// ListResourceTags: works in every state.
    pub fn list_resource_tags(&self, key_ref: &str) -> Result<Vec<(String, String)>, Error> {
        let k = self.resolve_key(key_ref)?;
        Ok(self.store.tags(&k.key_id)?)
    }

    /// The unwrapped material of every live version: for tests that prove material never
    /// reaches the disk in plain.
    #[doc(hidden)]
    pub fn dangerous_export_material_for_tests(
        &self,
        key_ref: &str,
    ) -> Result<Vec<Zeroizing<Vec<u8>>>, Error> {
        let k = self.resolve(key_ref)?;
        self.store
            .versions(&k.key_id)?
            .iter()
            .map(|v| {
                self.root
                    .unwrap(&v.wrapped, &Self::wrap_context(&k.key_id, v.version))
            })
            .collect()
    }
}

/// Cuts `rows` (fetched with one extra) to `limit`, with a marker if there is more.
fn page<R, T>(
    mut rows: Vec<R>,
    limit: usize,
    marker: impl Fn(&R) -> String,
    map: impl Fn(R) -> T,
) -> Page<T> {
    let next_marker = (rows.len() > limit).then(|| marker(&rows[limit - 1]));
    rows.truncate(limit);
    Page {
        items: rows.into_iter().map(map).collect(),
        next_marker,
    }
}

fn check_limit(limit: usize) -> Result<usize, Error> {
    if (1..=1000).contains(&limit) {
        Ok(limit)
    } else {
        Err(Error::Validation(format!(
            "1 validation error detected: Value '{limit}' at 'limit' failed to satisfy constraint: \
             Member must have value between 1 and 1000"
        )))
    }
}

fn check_policy_name(name: &str) -> Result<(), Error> {
    if name == "default" {
        Ok(())
    } else {
        Err(Error::NotFound(format!("No such policy exists: {name}")))
    }
}

/// A key description: at most 8192 characters, no NUL (which no backend need store).
fn check_description(text: &str) -> Result<(), Error> {
    if text.chars().count() > 8192 || text.contains('\0') {
        return Err(Error::Validation(
            "Description must be at most 8192 characters, without NUL".into(),
        ));
    }
    Ok(())
}
