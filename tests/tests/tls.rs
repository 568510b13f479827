//! `rediss://` against a TLS-enabled `redis-server` with a test CA made by
//! `openssl` for this run. The client trusts the CA through
//! `SSL_CERT_FILE` (read by rustls-native-certs), so this test lives alone
//! in its own binary.

use std::path::Path;
use std::process::Command;

use runonce::{Dedupe, Error, TriggerOptions};
use runonce_tests::{free_port, require_binary, RedisServer};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new(require_binary("openssl"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1, signed by it.
fn make_certs(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=runonce test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        ],
    );
}

#[tokio::test]
async fn rediss_with_a_test_ca() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let p = |f: &str| certs.path().join(f).to_string_lossy().into_owned();
    let tls_port = free_port();
    let server = RedisServer::builder()
        .arg("tls-port", &tls_port.to_string())
        .arg("tls-cert-file", &p("server.crt"))
        .arg("tls-key-file", &p("server.key"))
        .arg("tls-ca-cert-file", &p("ca.crt"))
        .arg("tls-auth-clients", "no")
        .start();
    // Only this test binary's process trusts the test CA.
    std::env::set_var("SSL_CERT_FILE", p("ca.crt"));

    let url = format!("rediss://127.0.0.1:{tls_port}");
    let d = Dedupe::builder().redis_url(&url).build().await.unwrap();
    assert_eq!(d.eviction_policy(), Some("noeviction"));
    let a = d
        .trigger("t", TriggerOptions::with_key("tls"))
        .await
        .unwrap();
    let b = d
        .trigger("t", TriggerOptions::with_key("tls"))
        .await
        .unwrap();
    assert!(!a.cached && b.cached && a.run_id == b.run_id);
    assert_eq!(server.dbsize(), 1, "the record went through the TLS port");

    // A plain-text client on the TLS port gets a typed backend error, fast.
    let plain = Dedupe::builder()
        .redis_url(format!("redis://127.0.0.1:{tls_port}"))
        .timeout(std::time::Duration::from_secs(1))
        .build()
        .await;
    assert!(
        matches!(plain, Err(Error::Backend { .. } | Error::Timeout { .. })),
        "{plain:?}"
    );
}
