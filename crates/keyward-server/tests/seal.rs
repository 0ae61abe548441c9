//! Sealing a server lets go of its root key: once the requests under way end, nothing
//! holds the KMS (and with it the root key and the unwrapped key material) any more.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use keyward_kms::{AesRootKey, Kms, KmsConfig, SystemClock};
use keyward_server::seal::{FileUnsealer, Node, Running};
use keyward_server::tls::{TlsSettings, TlsState};

#[test]
fn sealing_drops_the_kms_and_its_root_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(keyward_store::SqliteStore::open(&dir.path().join("k.db")).unwrap());
    let root = AesRootKey::new(&[7; 32], "test").unwrap();
    let kms = Arc::new(
        Kms::open(
            store,
            Box::new(root),
            Arc::new(SystemClock),
            KmsConfig::default(),
        )
        .unwrap(),
    );
    // A warm key: its material is in the cache that sealing must let go of.
    let key = kms
        .create_key(&keyward_kms::CreateKeyRequest::default())
        .unwrap();
    kms.encrypt(&key.key_id, b"x", &Default::default()).unwrap();
    let tls = TlsState::start(
        kms.clone(),
        TlsSettings {
            names: vec!["localhost".into()],
            client_auth: keyward_pki::ClientAuth::Off,
            cert_ttl: time::Duration::hours(1),
            provided: None,
            keep: Some(dir.path().to_owned()),
        },
    )
    .unwrap();
    let weak = Arc::downgrade(&kms);
    drop(kms);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let node = {
        let _in = runtime.enter();
        Node::unsealed(
            Running::start(Arc::new(tls), None),
            Box::new(FileUnsealer(dir.path().join("root.key"))),
            Box::new(|_| Err(keyward_server::ServerError::Internal("no".into()))),
        )
    };
    // A request under way keeps the service until it ends.
    let in_flight = node.running().unwrap();
    let status = runtime.block_on(async {
        let node = Arc::new(node);
        let n = node.clone();
        let status = tokio::task::spawn_blocking(move || n.seal()).await.unwrap();
        assert!(node.running().is_none(), "no request starts after the seal");
        assert!(node.tls_config().is_some(), "the listener goes on, sealed");
        status
    });
    assert!(status.sealed);
    assert!(weak.upgrade().is_some(), "held by the request under way");
    drop(in_flight);
    // The background tasks are aborted; they let go once the runtime drops them.
    for _ in 0..200 {
        if weak.upgrade().is_none() {
            break;
        }
        runtime.block_on(async { tokio::time::sleep(Duration::from_millis(10)).await });
    }
    assert!(
        weak.upgrade().is_none(),
        "something still holds the KMS after the seal"
    );
    // The listener's certificate was kept for a sealed start.
    keyward_server::tls::kept_config(dir.path()).unwrap();
}
