//! Issue 7, the fault test: three `keyward serve` nodes on one PostgreSQL database behind
//! a client that retries retryable errors on the next node, under a steady mixed
//! workload; one node is killed with SIGKILL mid-run and restarted, PostgreSQL is
//! restarted once. Every operation acknowledged to the client must be durable, every
//! ciphertext it got must decrypt afterwards (through every node), the audit chain must
//! verify with at least one record per acknowledged request, and the client must never
//! have seen a non-retryable error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::kms::{Client, Session};
use serde_json::{Value, json};

/// How long the workload runs, and when the faults come (from its start).
const LOAD: Duration = Duration::from_secs(24);
const KILL_B_AT: Duration = Duration::from_secs(4);
const RESTART_B_AT: Duration = Duration::from_secs(8);
const RESTART_PG_AT: Duration = Duration::from_secs(14);
/// The whole test's time, after which its nodes are killed; and the checks' share.
const TEST_DEADLINE: Duration = Duration::from_secs(75);
const CHECK_BUDGET: Duration = Duration::from_secs(40);
/// How long PostgreSQL stays down.
const PG_DOWN: Duration = Duration::from_secs(2);
/// Each worker's pause between operations.
const PAUSE: Duration = Duration::from_millis(20);
/// Workers running the mixed workload (besides the one changing the dedicated key).
const WORKERS: usize = 4;
/// Keys each worker creates during the run.
const CREATES_PER_WORKER: u32 = 2;
/// On-demand rotations of the dedicated key (KMS allows 25 per key).
const MAX_ROTATIONS: u32 = 8;

/// A ciphertext the client was given, with what it must decrypt to.
#[derive(Clone)]
struct Sealed {
    blob: String,
    context: Value,
    /// Base64, as the API carries it.
    plaintext: String,
}

/// What the client was acknowledged, and what went wrong for good.
#[derive(Default)]
struct Ledger {
    keys: Mutex<Vec<String>>,
    /// Under the shared keys (the workers decrypt these during the run).
    sealed: Mutex<Vec<Sealed>>,
    /// Under the dedicated key, which is disabled now and then: checked afterwards only.
    sealed_dedicated: Mutex<Vec<Sealed>>,
    counts: Mutex<BTreeMap<&'static str, u64>>,
    failures: Mutex<Vec<String>>,
}

impl Ledger {
    fn count(&self, kind: &'static str) {
        *self.counts.lock().unwrap().entry(kind).or_default() += 1;
    }

    fn fail(&self, what: String) {
        eprintln!("cluster: FAILURE {what}");
        self.failures.lock().unwrap().push(what);
    }

    fn random_key(&self, rng: &mut Rng) -> String {
        let keys = self.keys.lock().unwrap();
        keys[rng.below(keys.len())].clone()
    }

    fn random_sealed(&self, rng: &mut Rng) -> Option<Sealed> {
        let sealed = self.sealed.lock().unwrap();
        (!sealed.is_empty()).then(|| sealed[rng.below(sealed.len())].clone())
    }
}

/// xorshift64*: enough randomness for choosing operations, without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn created_key_id(v: &Value) -> String {
    v["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned()
}

/// One operation through `session`; its result, or `None` after recording why not.
async fn call(
    session: &mut Session,
    ledger: &Ledger,
    kind: &'static str,
    body: Value,
) -> Option<Value> {
    match session.call(kind, &body).await {
        Ok(v) => {
            ledger.count(kind);
            Some(v)
        }
        Err(e) => {
            ledger.fail(e.to_string());
            None
        }
    }
}

/// Decrypts `s` and checks the plaintext; records a mismatch as a failure.
async fn decrypt(session: &mut Session, ledger: &Ledger, s: &Sealed) {
    let body = json!({ "CiphertextBlob": s.blob, "EncryptionContext": s.context });
    if let Some(v) = call(session, ledger, "Decrypt", body).await
        && v["Plaintext"].as_str() != Some(s.plaintext.as_str())
    {
        ledger.fail(format!("Decrypt of {} gave another plaintext", s.blob));
    }
}

/// The mixed workload: mostly Encrypt and GenerateDataKey under the shared keys, with
/// encryption context; Decrypt of earlier ciphertexts; a few CreateKey.
async fn worker(worker: usize, mut session: Session, ledger: Arc<Ledger>, stop: Arc<AtomicBool>) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((worker as u64 + 1) * 0x1000_0001));
    let (mut created, mut n) = (0, 0u64);
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let context = json!({ "worker": worker.to_string(), "n": n.to_string() });
        let roll = rng.below(100);
        if roll < 2 && created < CREATES_PER_WORKER {
            let body = json!({ "Description": format!("cluster test, worker {worker}") });
            if let Some(v) = call(&mut session, &ledger, "CreateKey", body).await {
                created += 1;
                ledger.keys.lock().unwrap().push(created_key_id(&v));
            }
        } else if roll < 45 {
            let key = ledger.random_key(&mut rng);
            let len = 1 + rng.below(64);
            let plaintext = b64(&rng.bytes(len));
            let body =
                json!({ "KeyId": key, "Plaintext": plaintext, "EncryptionContext": context });
            if let Some(v) = call(&mut session, &ledger, "Encrypt", body).await {
                let blob = v["CiphertextBlob"].as_str().unwrap().to_owned();
                ledger.sealed.lock().unwrap().push(Sealed {
                    blob,
                    context,
                    plaintext,
                });
            }
        } else if roll < 75 {
            let key = ledger.random_key(&mut rng);
            let body = json!({ "KeyId": key, "KeySpec": "AES_256", "EncryptionContext": context });
            if let Some(v) = call(&mut session, &ledger, "GenerateDataKey", body).await {
                ledger.sealed.lock().unwrap().push(Sealed {
                    blob: v["CiphertextBlob"].as_str().unwrap().to_owned(),
                    context,
                    plaintext: v["Plaintext"].as_str().unwrap().to_owned(),
                });
            }
        } else if let Some(s) = ledger.random_sealed(&mut rng) {
            decrypt(&mut session, &ledger, &s).await;
        }
        // A steady load, not a flood: what it made is checked through every node after.
        tokio::time::sleep(PAUSE).await;
    }
}

/// Changes the dedicated key: Encrypt under it, DisableKey, EnableKey, now and then
/// RotateKeyOnDemand. Nobody else uses the key, so every Encrypt finds it enabled.
async fn changer(mut session: Session, key: String, ledger: Arc<Ledger>, stop: Arc<AtomicBool>) {
    let mut rng = Rng(0x5eed);
    let (mut rotations, mut n) = (0, 0u64);
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let context = json!({ "changer": n.to_string() });
        let plaintext = b64(&rng.bytes(16));
        let body = json!({ "KeyId": key, "Plaintext": plaintext, "EncryptionContext": context });
        if let Some(v) = call(&mut session, &ledger, "Encrypt", body).await {
            ledger.sealed_dedicated.lock().unwrap().push(Sealed {
                blob: v["CiphertextBlob"].as_str().unwrap().to_owned(),
                context,
                plaintext,
            });
        }
        if n % 3 == 0 && rotations < MAX_ROTATIONS {
            let body = json!({ "KeyId": key });
            if call(&mut session, &ledger, "RotateKeyOnDemand", body)
                .await
                .is_some()
            {
                rotations += 1;
            }
        } else {
            for kind in ["DisableKey", "EnableKey"] {
                call(&mut session, &ledger, kind, json!({ "KeyId": key })).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// SIGKILLs the `keyward` processes this test started (its children), by pid.
fn kill_our_nodes() {
    let me = std::process::id().to_string();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some((head, tail)) = stat.rsplit_once(')') else {
            continue;
        };
        let ppid = tail.split_whitespace().nth(1);
        if head.ends_with("(keyward") && ppid == Some(me.as_str()) {
            let pid = entry.file_name().to_string_lossy().into_owned();
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
    }
}

/// If the test is still running at `deadline`, kills its nodes: whatever waited for them
/// (a banner, a request) then fails instead of hanging.
fn watchdog(deadline: Duration, done: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let started = Instant::now();
        while started.elapsed() < deadline {
            if done.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!("cluster: TIMED OUT after {deadline:?}: killing the nodes");
        kill_our_nodes();
    });
}

fn sigterm(server: &mut common::Server) {
    let pid = server.child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = server.child.wait().unwrap();
    assert!(status.success(), "node {pid} stopped with {status}");
}

#[test]
fn three_nodes_survive_a_killed_node_and_a_postgres_restart() {
    let Some(pg) = keyward_testpg::PgCluster::start() else {
        eprintln!("SKIPPED: three_nodes_survive_a_killed_node_and_a_postgres_restart");
        return;
    };
    let test_started = Instant::now();
    let finished = Arc::new(AtomicBool::new(false));
    watchdog(TEST_DEADLINE, finished.clone());
    let url = pg.url();
    let db = ["--database-url", url.as_str()];
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<_> = ["a", "b", "c"].iter().map(|n| dir.path().join(n)).collect();
    let mut a = common::start_with(&data[0], &db);
    let env = |name: &str| {
        a.env
            .iter()
            .find(|(k, _)| k == name)
            .unwrap_or_else(|| panic!("{name} not in A's banner: {:?}", a.banner))
            .1
            .clone()
    };
    let (access_key, secret, ca) = (
        env("AWS_ACCESS_KEY_ID"),
        env("AWS_SECRET_ACCESS_KEY"),
        env("AWS_CA_BUNDLE"),
    );
    for d in &data[1..] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::copy(data[0].join("root.key"), d.join("root.key")).unwrap();
    }
    let mut b = common::start_with(&data[1], &db);
    let mut c = common::start_with(&data[2], &db);
    for (name, node) in [("B", &b), ("C", &c)] {
        assert!(
            node.banner
                .iter()
                .any(|l| l.starts_with("# administrator credentials")),
            "node {name}: {:?}",
            node.banner
        );
    }
    let ports = vec![a.port(), b.port(), c.port()];
    let client = Arc::new(Client::new(
        ports.clone(),
        std::path::Path::new(&ca),
        &access_key,
        &secret,
    ));
    let ledger = Arc::new(Ledger::default());
    let stop = Arc::new(AtomicBool::new(false));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // Before the faults: two shared keys and the dedicated one.
    let dedicated = runtime.block_on(async {
        let mut s = client.session(0);
        for _ in 0..2 {
            let v = call(&mut s, &ledger, "CreateKey", json!({})).await.unwrap();
            ledger.keys.lock().unwrap().push(created_key_id(&v));
        }
        let v = call(&mut s, &ledger, "CreateKey", json!({})).await.unwrap();
        created_key_id(&v)
    });
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let session = client.session(w);
        tasks.push(runtime.spawn(worker(w, session, ledger.clone(), stop.clone())));
    }
    tasks.push(runtime.spawn(changer(
        client.session(WORKERS),
        dedicated.clone(),
        ledger.clone(),
        stop.clone(),
    )));

    // The faults, while the load runs.
    let load_started = Instant::now();
    let at = |t: Duration| std::thread::sleep(t.saturating_sub(load_started.elapsed()));
    at(KILL_B_AT);
    eprintln!("cluster: {:?} SIGKILL node B", load_started.elapsed());
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    at(RESTART_B_AT);
    eprintln!("cluster: {:?} restarting node B", load_started.elapsed());
    let listen = format!("127.0.0.1:{}", ports[1]);
    b = common::start_at(&data[1], &listen, &db, &[]);
    assert!(
        b.banner.iter().any(|l| l.contains("serving")),
        "node B did not come back on {listen}: {:?}",
        b.banner
    );
    at(RESTART_PG_AT);
    eprintln!(
        "cluster: {:?} stopping PostgreSQL for {PG_DOWN:?}, then starting it again",
        load_started.elapsed()
    );
    pg.restart_after(PG_DOWN);
    eprintln!("cluster: {:?} PostgreSQL is back", load_started.elapsed());
    at(LOAD);
    stop.store(true, Ordering::Relaxed);
    runtime.block_on(async {
        for t in tasks {
            t.await.unwrap();
        }
    });
    let load_secs = load_started.elapsed().as_secs_f64();
    let during_load = client
        .acknowledged
        .load(std::sync::atomic::Ordering::Relaxed);
    let retries_during_load = client.retries.load(std::sync::atomic::Ordering::Relaxed);
    let counts = ledger.counts.lock().unwrap().clone();
    let reasons = client.retry_reasons.lock().unwrap().clone();

    // Afterwards: every acknowledged key exists, every ciphertext decrypts through
    // every node.
    let keys = ledger.keys.lock().unwrap().clone();
    let mut sealed = ledger.sealed.lock().unwrap().clone();
    sealed.extend(ledger.sealed_dedicated.lock().unwrap().iter().cloned());
    let checked = Instant::now();
    runtime.block_on(async {
        let mut s = client.session(0);
        for key in keys.iter().chain([&dedicated]) {
            if let Some(v) = call(&mut s, &ledger, "DescribeKey", json!({ "KeyId": key })).await {
                assert_eq!(v["KeyMetadata"]["KeyState"], "Enabled", "{v}");
            }
        }
        let sealed = Arc::new(sealed.clone());
        let mut checks = Vec::new();
        for part in 0..4 {
            let (sealed, ledger) = (sealed.clone(), ledger.clone());
            let mut session = client.session(part);
            checks.push(tokio::spawn(async move {
                for s in sealed.iter().skip(part).step_by(4) {
                    if checked.elapsed() > CHECK_BUDGET || test_started.elapsed() > TEST_DEADLINE {
                        ledger.fail("the checks ran out of time".into());
                        return;
                    }
                    // Round-robin: three in a row go to the three nodes.
                    for _ in 0..3 {
                        decrypt(&mut session, &ledger, s).await;
                    }
                }
            }));
        }
        for t in checks {
            t.await.unwrap();
        }
    });
    let check_secs = checked.elapsed().as_secs_f64();
    // Each node on its own (no failover to hide one that did not recover): a change of
    // state, which it refuses while it cannot keep its audit record, and a round trip.
    let mut alone_acknowledged = 0;
    for (n, port) in ports.iter().enumerate() {
        let alone = Arc::new(Client::new(
            vec![*port],
            std::path::Path::new(&ca),
            &access_key,
            &secret,
        ));
        runtime.block_on(async {
            let mut s = alone.session(0);
            let key = json!({ "KeyId": dedicated });
            for kind in ["DisableKey", "EnableKey"] {
                call(&mut s, &ledger, kind, key.clone()).await;
            }
            let plaintext = b64(format!("node {n}").as_bytes());
            let body = json!({ "KeyId": dedicated, "Plaintext": plaintext });
            if let Some(v) = call(&mut s, &ledger, "Encrypt", body).await {
                let sealed = Sealed {
                    blob: v["CiphertextBlob"].as_str().unwrap().to_owned(),
                    context: json!({}),
                    plaintext,
                };
                decrypt(&mut s, &ledger, &sealed).await;
            }
        });
        let failed = alone.retries.load(Ordering::Relaxed);
        assert_eq!(failed, 0, "node {n} alone: {:?}", alone.retry_reasons);
        alone_acknowledged += alone.acknowledged.load(Ordering::Relaxed);
    }
    let acknowledged = client.acknowledged.load(Ordering::Relaxed) + alone_acknowledged;
    let retries = client.retries.load(Ordering::Relaxed);
    let retries_after_load = retries - retries_during_load;

    for node in [&mut a, &mut b, &mut c] {
        sigterm(node);
    }
    finished.store(true, Ordering::Relaxed);
    let verified = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["audit", "verify", "--data-dir"])
        .arg(&data[0])
        .args(["--database-url", &url])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verified.stdout).into_owned()
        + &String::from_utf8_lossy(&verified.stderr);
    let records: u64 = said
        .split_whitespace()
        .skip_while(|w| *w != "verified")
        .nth(1)
        .and_then(|w| w.parse().ok())
        .unwrap_or(0);
    eprintln!(
        "cluster: summary: load {load_secs:.1} s, {during_load} operations acknowledged \
         during it by kind {counts:?}, {retries_during_load} retried attempts {reasons:?}; afterwards \
         {} keys described and {} ciphertexts decrypted through each of 3 nodes in \
         {check_secs:.1} s; {retries_after_load} retried attempts; each node alone: a disable, enable, encrypt and \
         decrypt; {acknowledged} acknowledged in all; \
         audit: {records} records verified; whole test {:.1} s",
        keys.len() + 1,
        sealed.len(),
        test_started.elapsed().as_secs_f64()
    );
    let failures = ledger.failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} failures, first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(verified.status.success(), "audit verify: {said}");
    // Long after the faults every node answers at once.
    assert_eq!(
        retries_after_load, 0,
        "retries after the load: {:?}",
        client.retry_reasons
    );
    assert!(
        records >= acknowledged,
        "{records} audit records for {acknowledged} acknowledged requests: {said}"
    );
    assert!(
        retries_during_load > 0,
        "no retries: the faults did not reach the client"
    );
    for kind in [
        "CreateKey",
        "Encrypt",
        "GenerateDataKey",
        "Decrypt",
        "DisableKey",
        "EnableKey",
        "RotateKeyOnDemand",
    ] {
        assert!(
            counts.get(kind).is_some_and(|n| *n > 0),
            "no {kind} acknowledged"
        );
    }
}
