//! Key policies: JSON documents in the AWS key-policy shape, parsed strictly and
//! evaluated with default deny, where an explicit `Deny` wins over any `Allow`.
//!
//! The subset keyward understands (anything else is a `MalformedPolicyDocumentException`
//! naming what it did not understand, never silently ignored):
//!
//! - `Version` (optional; `2012-10-17` if present), `Id` (optional), `Statement` (an object
//!   or a list, at most [`MAX_STATEMENTS`]).
//! - A statement: `Sid` (optional), `Effect` (`Allow` | `Deny`), `Principal` (`"*"` or
//!   `{"AWS": name | [names]}`; a name is a keyward principal — an access key's principal
//!   or a SPIFFE ID — or `"*"`), `Action` (`kms:<Operation>` or a pattern with `*` and `?`,
//!   one or a list), `Resource` (`"*"`, or this key's ARN), `Condition` (optional).
//! - Conditions: operators `StringEquals`, `StringNotEquals`, `StringLike`,
//!   `StringNotLike`, each optionally prefixed `ForAllValues:` or `ForAnyValue:`; keys
//!   `kms:EncryptionContext:<key>` (the value for that context key),
//!   `kms:EncryptionContextKeys` (the set of context keys) and `aws:PrincipalArn` (the
//!   caller's principal). Every operator must hold, every key within it must hold, and a
//!   key holds if any listed value matches. A missing single value fails the positive
//!   operators and satisfies the negated ones; for sets, `ForAllValues` holds on an empty
//!   set and `ForAnyValue` does not.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::Error;

/// Most statements in a policy.
pub const MAX_STATEMENTS: usize = 100;
/// Longest policy document, in bytes (AWS's limit).
pub const MAX_POLICY_LEN: usize = 32 * 1024;

/// What a request asks of a key, for evaluation.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The caller's principal.
    pub principal: &'a str,
    /// The operation, e.g. `Decrypt` (matched as `kms:Decrypt`).
    pub operation: &'a str,
    /// The encryption context of the request (empty for operations without one).
    pub context: &'a BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Allow,
    Deny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Equals,
    NotEquals,
    Like,
    NotLike,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quantifier {
    Single,
    ForAll,
    ForAny,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    Context(String),
    ContextKeys,
    Principal,
}

#[derive(Debug, Clone)]
struct Condition {
    quantifier: Quantifier,
    op: Op,
    key: Key,
    values: Vec<String>,
}

#[derive(Debug, Clone)]
struct Statement {
    effect: Effect,
    principals: Vec<String>,
    actions: Vec<String>,
    conditions: Vec<Condition>,
}

/// A parsed key policy.
#[derive(Debug, Clone)]
pub struct Policy {
    statements: Vec<Statement>,
}

fn malformed(why: impl Into<String>) -> Error {
    Error::MalformedPolicy(why.into())
}

/// One string or a list of strings.
fn strings(v: &Value, what: &str) -> Result<Vec<String>, Error> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| malformed(format!("{what} must be strings")))
            })
            .collect(),
        _ => Err(malformed(format!(
            "{what} must be a string or a list of strings"
        ))),
    }
}

/// Matches `text` against a pattern where `*` is any run and `?` any one character.
fn glob(pattern: &str, text: &str) -> bool {
    if pattern.is_ascii() && text.is_ascii() {
        glob_units(pattern.as_bytes(), text.as_bytes())
    } else {
        let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
        glob_units(&p, &t)
    }
}

/// Wildcard matching with one backtrack point (linear in practice, no allocation).
fn glob_units<T: Copy + PartialEq + From<u8>>(p: &[T], t: &[T]) -> bool {
    let (star, any) = (T::from(b'*'), T::from(b'?'));
    let (mut pi, mut ti) = (0, 0);
    let (mut resume, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == any || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == star {
            resume = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = resume {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == star)
}

impl Policy {
    /// Parses a policy document for the key `key_arn`.
    pub fn parse(text: &str, key_arn: &str) -> Result<Self, Error> {
        if text.len() > MAX_POLICY_LEN {
            return Err(malformed(format!("longer than {MAX_POLICY_LEN} bytes")));
        }
        let doc: Value =
            serde_json::from_str(text).map_err(|e| malformed(format!("not JSON: {e}")))?;
        let doc = doc
            .as_object()
            .ok_or_else(|| malformed("the policy must be a JSON object"))?;
        for (k, v) in doc {
            match k.as_str() {
                "Version" if v == "2012-10-17" => {}
                "Version" => return Err(malformed("Version must be 2012-10-17")),
                "Id" | "Statement" => {}
                other => return Err(malformed(format!("unknown policy element {other:?}"))),
            }
        }
        let statements = match doc.get("Statement") {
            Some(Value::Array(list)) => list.clone(),
            Some(one @ Value::Object(_)) => vec![one.clone()],
            _ => return Err(malformed("Statement is missing")),
        };
        if statements.is_empty() || statements.len() > MAX_STATEMENTS {
            return Err(malformed(format!(
                "a policy needs 1 to {MAX_STATEMENTS} statements"
            )));
        }
        let statements = statements
            .iter()
            .enumerate()
            .map(|(i, s)| statement(s, key_arn).map_err(|e| in_statement(e, i)))
            .collect::<Result<_, _>>()?;
        Ok(Self { statements })
    }

    /// Whether the policy allows `req`: some `Allow` matches and no `Deny` does.
    pub fn allows(&self, req: &Request<'_>) -> bool {
        let action = format!("kms:{}", req.operation);
        let mut allowed = false;
        for s in &self.statements {
            if s.matches(req, &action) {
                match s.effect {
                    Effect::Deny => return false,
                    Effect::Allow => allowed = true,
                }
            }
        }
        allowed
    }
}

fn in_statement(e: Error, i: usize) -> Error {
    match e {
        Error::MalformedPolicy(why) => malformed(format!("statement {}: {why}", i + 1)),
        e => e,
    }
}

fn statement(v: &Value, key_arn: &str) -> Result<Statement, Error> {
    let s = v
        .as_object()
        .ok_or_else(|| malformed("a statement must be an object"))?;
    for k in s.keys() {
        if ![
            "Sid",
            "Effect",
            "Principal",
            "Action",
            "Resource",
            "Condition",
        ]
        .contains(&k.as_str())
        {
            return Err(malformed(format!("unsupported element {k:?}")));
        }
    }
    let effect = match s.get("Effect").and_then(Value::as_str) {
        Some("Allow") => Effect::Allow,
        Some("Deny") => Effect::Deny,
        _ => return Err(malformed("Effect must be Allow or Deny")),
    };
    let principals = match s.get("Principal") {
        Some(Value::String(star)) if star == "*" => vec!["*".to_owned()],
        Some(Value::Object(p)) if p.len() == 1 && p.contains_key("AWS") => {
            strings(&p["AWS"], "Principal.AWS")?
        }
        _ => return Err(malformed(r#"Principal must be "*" or {"AWS": ...}"#)),
    };
    let actions = strings(
        s.get("Action")
            .ok_or_else(|| malformed("Action is missing"))?,
        "Action",
    )?;
    for a in &actions {
        if !a.starts_with("kms:") {
            return Err(malformed(format!("action {a:?} is not kms:...")));
        }
    }
    let resources = strings(
        s.get("Resource")
            .ok_or_else(|| malformed("Resource is missing"))?,
        "Resource",
    )?;
    if resources.iter().any(|r| r != "*" && r != key_arn) {
        return Err(malformed(r#"Resource must be "*" or this key's ARN"#));
    }
    let conditions = match s.get("Condition") {
        None => Vec::new(),
        Some(Value::Object(c)) => conditions(c)?,
        Some(_) => return Err(malformed("Condition must be an object")),
    };
    Ok(Statement {
        effect,
        principals,
        actions,
        conditions,
    })
}

fn conditions(c: &serde_json::Map<String, Value>) -> Result<Vec<Condition>, Error> {
    let mut out = Vec::new();
    for (operator, keys) in c {
        let (quantifier, op_name) = match operator.split_once(':') {
            Some(("ForAllValues", op)) => (Quantifier::ForAll, op),
            Some(("ForAnyValue", op)) => (Quantifier::ForAny, op),
            None => (Quantifier::Single, operator.as_str()),
            Some(_) => return Err(malformed(format!("unsupported operator {operator:?}"))),
        };
        let op = match op_name {
            "StringEquals" => Op::Equals,
            "StringNotEquals" => Op::NotEquals,
            "StringLike" => Op::Like,
            "StringNotLike" => Op::NotLike,
            _ => return Err(malformed(format!("unsupported operator {operator:?}"))),
        };
        let keys = keys
            .as_object()
            .ok_or_else(|| malformed(format!("{operator} must map condition keys to values")))?;
        for (key, values) in keys {
            let parsed = if let Some(k) = key.strip_prefix("kms:EncryptionContext:") {
                Key::Context(k.to_owned())
            } else if key == "kms:EncryptionContextKeys" {
                Key::ContextKeys
            } else if key == "aws:PrincipalArn" {
                Key::Principal
            } else {
                return Err(malformed(format!("unsupported condition key {key:?}")));
            };
            let multi = parsed == Key::ContextKeys;
            if multi == (quantifier == Quantifier::Single) {
                return Err(malformed(format!(
                    "{key} needs {}",
                    if multi {
                        "ForAllValues: or ForAnyValue:"
                    } else {
                        "an operator without ForAllValues:/ForAnyValue:"
                    }
                )));
            }
            out.push(Condition {
                quantifier,
                op,
                key: parsed,
                values: strings(values, key)?,
            });
        }
    }
    Ok(out)
}

impl Condition {
    fn one(&self, value: &str) -> bool {
        let any = |f: &dyn Fn(&str) -> bool| self.values.iter().any(|v| f(v));
        match self.op {
            Op::Equals => any(&|v| v == value),
            Op::NotEquals => !any(&|v| v == value),
            Op::Like => any(&|v| glob(v, value)),
            Op::NotLike => !any(&|v| glob(v, value)),
        }
    }

    fn holds(&self, req: &Request<'_>) -> bool {
        let negated = matches!(self.op, Op::NotEquals | Op::NotLike);
        match &self.key {
            Key::Principal => self.one(req.principal),
            Key::Context(k) => match req.context.get(k) {
                Some(v) => self.one(v),
                None => negated,
            },
            Key::ContextKeys => {
                let mut keys = req.context.keys();
                match self.quantifier {
                    Quantifier::ForAll => keys.all(|k| self.one(k)),
                    _ => keys.any(|k| self.one(k)),
                }
            }
        }
    }
}

impl Statement {
    fn matches(&self, req: &Request<'_>, action: &str) -> bool {
        self.principals
            .iter()
            .any(|p| p == "*" || p == req.principal)
            && self.actions.iter().any(|a| glob(a, action))
            && self.conditions.iter().all(|c| c.holds(req))
    }
}

/// What key administrators may do: manage the key, never use it.
pub const ADMIN_ACTIONS: &[&str] = &[
    "kms:Create*",
    "kms:Describe*",
    "kms:Enable*",
    "kms:List*",
    "kms:Put*",
    "kms:Update*",
    "kms:Revoke*",
    "kms:Disable*",
    "kms:Get*",
    "kms:Delete*",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion",
    "kms:RotateKeyOnDemand",
];

/// What key users may do: use the key, never manage it.
pub const USER_ACTIONS: &[&str] = &[
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:ReEncrypt*",
    "kms:GenerateDataKey*",
    "kms:DescribeKey",
];

/// The policy a key gets when none is given: `admins` manage it, `users` use it, in two
/// separate statements, as AWS's default key policy has them.
pub fn default_policy(admins: &[&str], users: &[&str]) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Id": "keyward-default",
        "Statement": [
            {
                "Sid": "Allow access for key administrators",
                "Effect": "Allow",
                "Principal": { "AWS": admins },
                "Action": ADMIN_ACTIONS,
                "Resource": "*",
            },
            {
                "Sid": "Allow use of the key",
                "Effect": "Allow",
                "Principal": { "AWS": users },
                "Action": USER_ACTIONS,
                "Resource": "*",
            },
        ],
    })
    .to_string()
}

#[cfg(test)]
mod tests;
