//! Certificates change while the gateway serves: a revocation list cuts a revoked consumer off,
//! on the connections it has open and on new ones; a broken or foreign list is refused and the
//! list in force stays; the gateway's own certificate rotates, as the server consumers see and
//! as the client providers see. No restart in any of it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use isnad_proto::v1::AttributesRequest;
use isnad_tests::providers::{Behaviour, ProviderDouble};
use isnad_tests::*;
use isnad_tls::policy::ExpectedPeer;
use isnad_tls::server::AcceptLimits;
use tonic::Code;

fn ask() -> AttributesRequest {
    request("identity.person", "housing-grant", &["full_name_en"])
}

fn ask_health() -> AttributesRequest {
    request("identity.person", "newborn-registration", &["full_name_en"])
}

/// Runs the `isnad` command line; fails the test if it fails.
fn isnad(args: &[&str]) -> String {
    let output = std::process::Command::new(isnad_bin())
        .args(args)
        .output()
        .expect("isnad runs");
    assert!(
        output.status.success(),
        "isnad {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Issues the gateway a new certificate (and key) in the federation's PKI directory `pki`.
fn reissue_gateway_certificate(pki: &std::path::Path) {
    isnad(&[
        "certs",
        "issue",
        "--dir",
        pki.to_str().expect("utf-8"),
        "--name",
        "gateway",
        "--spiffe-id",
        "spiffe://isnad.example/gateway/gateway",
    ]);
}

fn hangup(process: &Process) {
    let sent = std::process::Command::new("kill")
        .args(["-HUP", &process.pid().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
}

/// Waits until `process` has logged `needle` `times` times.
async fn wait_for_log(process: &Process, needle: &str, times: usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while process.logs().matches(needle).count() < times {
        assert!(
            Instant::now() < deadline,
            "never logged {needle:?} {times} times:\n{}",
            process.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The serial number of the certificate the gateway presents to a new connection.
async fn gateway_serial(federation: &Federation) -> Vec<u8> {
    let config = isnad_tls::policy::fixed_client_config(
        federation.material("housing-programme"),
        ExpectedPeer::AnyGateway {
            trust_domain: FEDERATION.into(),
        },
    )
    .expect("config");
    let tcp = tokio::net::TcpStream::connect(federation.gateway)
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("handshake");
    let leaf = tls.get_ref().1.peer_certificates().expect("a certificate")[0].clone();
    isnad_tls::CertificateId::of(leaf.as_ref())
        .expect("parses")
        .serial
}

/// Why the gateway ends a new connection made as `name`: TLS 1.3 checks the client's
/// certificate after the client finished its side of the handshake, so the refusal arrives as an
/// alert on the first read.
async fn handshake_refusal(federation: &Federation, name: &str) -> String {
    use tokio::io::AsyncReadExt;
    let config = isnad_tls::policy::fixed_client_config(
        federation.material(name),
        ExpectedPeer::AnyGateway {
            trust_domain: FEDERATION.into(),
        },
    )
    .expect("config");
    let tcp = tokio::net::TcpStream::connect(federation.gateway)
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = match tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
    {
        Ok(tls) => tls,
        Err(error) => return error.to_string(),
    };
    let mut byte = [0u8; 1];
    match tls.read(&mut byte).await {
        Ok(n) => format!("read {n} bytes: not refused"),
        Err(error) => error.to_string(),
    }
}

#[tokio::test]
async fn a_revoked_consumer_is_cut_off_on_open_connections_and_refused_on_new_ones() {
    let federation = Federation::start();
    let pki = federation.pki();
    let mut housing = federation.client("housing-programme");
    let mut health = federation.client("health-authority");
    get(&mut housing, ask()).await.expect("served before");
    get(&mut health, ask_health()).await.expect("served before");

    let printed = isnad(&[
        "certs",
        "revoke",
        "--dir",
        pki.to_str().expect("utf-8"),
        "housing-programme",
    ]);
    assert!(printed.contains("1 certificate(s)"), "{printed}");
    hangup(&federation.process);
    wait_for_log(&federation.process, "TLS material reloaded", 1).await;

    // The connection made before the revocation is cut off: the request fails, nothing is
    // released.
    let refused = get(&mut housing, ask()).await;
    let status = refused.expect_err("a revoked certificate is not served");
    assert!(
        matches!(
            status.code(),
            Code::Unavailable | Code::Unknown | Code::Unauthenticated
        ),
        "{status:?}"
    );
    // A new connection does not get past the handshake: the gateway answers with the TLS
    // alert certificate_revoked.
    let mut again = federation.client("housing-programme");
    get(&mut again, ask()).await.expect_err("refused");
    let alert = handshake_refusal(&federation, "housing-programme").await;
    assert!(alert.contains("CertificateRevoked"), "{alert}");
    // Another agency, on the connection it had and on a new one, is served as before.
    get(&mut health, ask_health())
        .await
        .expect("other agencies keep their connections");
    get(&mut federation.client("health-authority"), ask_health())
        .await
        .expect("and make new ones");
    assert!(
        federation
            .process
            .logs()
            .contains("closing the connection of a revoked certificate"),
        "{}",
        federation.process.logs()
    );
    assert!(!federation.process.logs().contains(&applicant()));
}

#[tokio::test]
async fn a_broken_or_foreign_revocation_list_is_refused_and_the_one_in_force_stays() {
    let federation = Federation::start();
    let crl = federation.pki().join("crl.pem");
    let mut housing = federation.client("housing-programme");
    get(&mut housing, ask()).await.expect("served");

    let foreign = isnad_certs::CertificateAuthority::generate("isnad.example")
        .expect("a CA of its own")
        .revocation_list(&isnad_certs::RevocationList::default(), 7)
        .expect("a list");
    let cases: [(&str, Vec<u8>); 3] = [
        (
            "garbage",
            b"-----BEGIN X509 CRL-----\nbm90IGEgbGlzdA==\n-----END X509 CRL-----\n".to_vec(),
        ),
        ("a list signed by another CA", foreign.into_bytes()),
        ("an empty file", Vec::new()),
    ];
    for (n, (what, bytes)) in cases.into_iter().enumerate() {
        std::fs::write(&crl, bytes).expect("write");
        hangup(&federation.process);
        wait_for_log(&federation.process, "TLS material not reloaded", n + 1).await;
        get(&mut housing, ask())
            .await
            .unwrap_or_else(|e| panic!("{what}: the open connection is served: {e:?}"));
        get(&mut federation.client("housing-programme"), ask())
            .await
            .unwrap_or_else(|e| panic!("{what}: a new connection is served: {e:?}"));
    }
    assert!(
        federation.process.logs().contains("is not signed by"),
        "{}",
        federation.process.logs()
    );
}

#[tokio::test]
async fn the_gateway_certificate_rotates_without_restart() {
    let federation = Federation::start();
    let pki = federation.pki();
    let mut open = federation.client("housing-programme");
    get(&mut open, ask()).await.expect("served");
    let before = gateway_serial(&federation).await;

    reissue_gateway_certificate(&pki);
    hangup(&federation.process);
    wait_for_log(&federation.process, "TLS material reloaded", 1).await;

    let after = gateway_serial(&federation).await;
    assert_ne!(before, after, "new connections see the new certificate");
    // The connection made with the old certificate goes on.
    get(&mut open, ask())
        .await
        .expect("the open connection is served");
    get(&mut federation.client("housing-programme"), ask())
        .await
        .expect("a new connection is served");
}

#[tokio::test]
async fn providers_see_the_rotated_client_certificate_on_new_connections() {
    let federation = Federation::start();
    let pki = federation.pki();
    let sha256 = |der: &[u8]| -> [u8; 32] {
        ring::digest::digest(&ring::digest::SHA256, der)
            .as_ref()
            .try_into()
            .expect("32 bytes")
    };
    let old = sha256(federation.material("gateway").chain[0].as_ref());
    // The provider closes connections idle for 300 ms, so the gateway has to make new ones.
    let provider = federation.material("identity-authority");
    let double = ProviderDouble::start_with(
        "127.0.0.1:0".parse().expect("addr"),
        &provider,
        Behaviour::Slow(Duration::ZERO),
        AcceptLimits {
            idle_timeout: Some(Duration::from_millis(300)),
            ..AcceptLimits::default()
        },
    )
    .await;
    let node = federation.serve_gateway(&[("identity-authority", double.endpoint())], "");
    let mut client = client_with(node.addr, &federation.material("housing-programme"));
    get(&mut client, ask()).await.expect("served");
    assert_eq!(double.callers(), vec![old]);

    reissue_gateway_certificate(&pki);
    let new = sha256(federation.material("gateway").chain[0].as_ref());
    assert_ne!(old, new);
    hangup(&node.process);
    wait_for_log(&node.process, "TLS material reloaded", 1).await;

    // The connections made with the old certificate close; the new ones present the new one.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let before = double.callers().len();
    for _ in 0..8 {
        get(&mut client, ask()).await.expect("served");
    }
    assert_eq!(double.callers()[before..], [new; 8]);
}

#[tokio::test]
async fn a_revoked_provider_is_no_longer_called() {
    let federation = Federation::start();
    let pki = federation.pki();
    let mut housing = federation.client("housing-programme");
    let employment = || request("labour.employment", "housing-grant", &["employed"]);
    // Both upstream connections exist before the revocation.
    get(&mut housing, ask()).await.expect("served");
    get(&mut housing, employment()).await.expect("served");

    isnad(&[
        "certs",
        "revoke",
        "--dir",
        pki.to_str().expect("utf-8"),
        "identity-authority",
    ]);
    hangup(&federation.process);
    wait_for_log(&federation.process, "TLS material reloaded", 1).await;

    // The gateway closes its connection to the revoked provider and refuses a new one.
    for _ in 0..3 {
        let (code, reason) = refusal(get(&mut housing, ask()).await);
        assert_eq!(code, Code::Unavailable, "{reason}");
        assert!(
            ["provider_unavailable", "provider_refused", "provider_error"]
                .contains(&reason.as_str()),
            "{reason}"
        );
    }
    get(&mut housing, employment())
        .await
        .expect("other providers are called as before");
}
