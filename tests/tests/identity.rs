//! Only clients with a certificate from the federation CA, valid and naming an agency by SPIFFE
//! ID, get anything.

use isnad_certs::{CertificateAuthority, Identity, IssueRequest};
use isnad_tests::{
    FEDERATION, Federation, client_with, client_with_config, get, material_from, refusal, request,
};
use tonic::Code;

fn ask() -> isnad_proto::v1::AttributesRequest {
    request("identity.person", "housing-grant", &["full_name_en"])
}

/// A refused handshake: the call fails at the transport, carrying no isnad reason.
async fn assert_refused_at_tls(
    mut client: isnad_proto::v1::exchange_client::ExchangeClient<tonic::transport::Channel>,
) {
    let status = get(&mut client, ask())
        .await
        .expect_err("no answer without a valid certificate");
    assert!(
        matches!(
            status.code(),
            Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled
        ),
        "{status:?}"
    );
    assert_eq!(isnad_proto::errors::reason(&status), None);
}

async fn assert_still_serving(federation: &Federation) {
    let mut client = federation.client("housing-programme");
    get(&mut client, ask())
        .await
        .expect("the gateway still serves good clients");
}

#[tokio::test]
async fn refuses_a_client_without_certificate() {
    let federation = Federation::start();
    let roots = isnad_tls::material::load_roots(&federation.pki().join("ca.pem")).expect("CA");
    let tls = rustls::ClientConfig::builder_with_provider(isnad_tls::policy::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut tls = tls;
    tls.alpn_protocols = vec![b"h2".to_vec()];
    // The gateway's certificate names localhost, so standard verification accepts it.
    let channel = isnad_tls::client::channel(
        &format!("https://localhost:{}", federation.gateway.port()),
        std::sync::Arc::new(tls),
        Default::default(),
    )
    .expect("channel");
    assert_refused_at_tls(isnad_proto::v1::exchange_client::ExchangeClient::new(
        channel,
    ))
    .await;
    assert_still_serving(&federation).await;
}

#[tokio::test]
async fn refuses_a_certificate_from_another_ca() {
    let federation = Federation::start();
    let stranger = CertificateAuthority::generate(FEDERATION).expect("CA");
    let identity = Identity::agency(FEDERATION, "housing-programme");
    let cert = stranger
        .issue(&IssueRequest::for_identity(&identity, 1))
        .expect("cert");
    // The client trusts the real federation CA (to reach the gateway), but presents a
    // certificate of the stranger's.
    let ca_pem = std::fs::read_to_string(federation.pki().join("ca.pem")).expect("ca");
    let material = material_from(
        &federation.dir.path().join("stranger"),
        &ca_pem,
        "housing-programme",
        &cert,
    );
    assert_refused_at_tls(client_with(federation.gateway, &material)).await;
    assert_still_serving(&federation).await;
}

#[tokio::test]
async fn refuses_an_expired_certificate() {
    let federation = Federation::start();
    let identity = Identity::agency(FEDERATION, "housing-programme");
    let mut issue = IssueRequest::for_identity(&identity, 1);
    issue.not_before = time_ago(10);
    issue.not_after = time_ago(1);
    let cert = federation.ca().issue(&issue).expect("cert");
    let ca_pem = std::fs::read_to_string(federation.pki().join("ca.pem")).expect("ca");
    let material = material_from(
        &federation.dir.path().join("expired"),
        &ca_pem,
        "housing-programme",
        &cert,
    );
    assert_refused_at_tls(client_with(federation.gateway, &material)).await;
    assert_still_serving(&federation).await;
}

fn time_ago(days: u32) -> isnad_certs::OffsetDateTime {
    isnad_certs::OffsetDateTime::now_utc() - isnad_certs::Duration::days(i64::from(days))
}

#[tokio::test]
async fn refuses_a_certificate_without_spiffe_id() {
    let federation = Federation::start();
    let identity = Identity::agency(FEDERATION, "housing-programme");
    let mut issue = IssueRequest::for_identity(&identity, 1);
    issue.spiffe_id = None;
    let cert = federation.ca().issue(&issue).expect("cert");
    let ca_pem = std::fs::read_to_string(federation.pki().join("ca.pem")).expect("ca");
    let material = material_from(
        &federation.dir.path().join("nospiffe"),
        &ca_pem,
        "housing-programme",
        &cert,
    );
    let mut client = client_with(federation.gateway, &material);
    let (code, reason) = refusal(get(&mut client, ask()).await);
    assert_eq!(
        (code, reason.as_str()),
        (Code::Unauthenticated, "no_spiffe_id")
    );
}

#[tokio::test]
async fn refuses_identities_that_are_not_agencies_of_the_catalogue() {
    let federation = Federation::start();
    for name in ["auditor", "admin"] {
        let mut client = federation.client(name);
        let (code, reason) = refusal(get(&mut client, ask()).await);
        assert_eq!(
            (code, reason.as_str()),
            (Code::PermissionDenied, "unknown_consumer"),
            "{name}"
        );
    }
    let cert = federation
        .ca()
        .issue(&IssueRequest::for_identity(
            &Identity::agency(FEDERATION, "tax-authority"),
            1,
        ))
        .expect("cert");
    let ca_pem = std::fs::read_to_string(federation.pki().join("ca.pem")).expect("ca");
    let material = material_from(
        &federation.dir.path().join("tax"),
        &ca_pem,
        "tax-authority",
        &cert,
    );
    let mut client = client_with_config(
        federation.gateway,
        isnad_tls::policy::fixed_client_config(
            material,
            isnad_tls::policy::ExpectedPeer::AnyGateway {
                trust_domain: FEDERATION.into(),
            },
        )
        .expect("config"),
    );
    let (code, reason) = refusal(get(&mut client, ask()).await);
    assert_eq!(
        (code, reason.as_str()),
        (Code::PermissionDenied, "unknown_consumer")
    );
}
