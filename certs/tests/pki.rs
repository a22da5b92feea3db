//! The development PKI issues what the federation's naming contract says.

use isnad_certs::{CertificateAuthority, Identity, IssueRequest, init_dir};
use x509_parser::extensions::GeneralName;
use x509_parser::pem::parse_x509_pem;
use x509_parser::prelude::*;

const TD: &str = "isnad.example";

fn der_of(pem: &str) -> Vec<u8> {
    parse_x509_pem(pem.as_bytes()).expect("PEM").1.contents
}

fn uris(cert: &X509Certificate<'_>) -> Vec<String> {
    cert.subject_alternative_name()
        .expect("SAN parses")
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::URI(u) => Some((*u).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_leaf_chains_to_the_ca_and_carries_one_spiffe_id() {
    let ca = CertificateAuthority::generate(TD).expect("CA");
    let identity = Identity::agency(TD, "housing-programme");
    let leaf = ca
        .issue(&IssueRequest::for_identity(&identity, 30))
        .expect("leaf");
    let ca_der = der_of(ca.cert_pem());
    let leaf_der = der_of(&leaf.cert_pem);
    let (_, ca_cert) = X509Certificate::from_der(&ca_der).expect("CA parses");
    let (_, cert) = X509Certificate::from_der(&leaf_der).expect("leaf parses");
    cert.verify_signature(Some(ca_cert.public_key()))
        .expect("signed by the CA");
    assert_eq!(
        uris(&cert),
        vec!["spiffe://isnad.example/agency/housing-programme"]
    );
    assert!(!cert.is_ca());
    let eku = cert
        .extended_key_usage()
        .expect("EKU")
        .expect("present")
        .value;
    assert!(eku.server_auth && eku.client_auth);
    assert!(cert.validity().is_valid());
    assert!(ca_cert.is_ca());
}

#[test]
fn a_request_without_spiffe_id_has_no_uri_san() {
    let ca = CertificateAuthority::generate(TD).expect("CA");
    let mut request = IssueRequest::for_identity(&Identity::agency(TD, "x"), 1);
    request.spiffe_id = None;
    let leaf = ca.issue(&request).expect("leaf");
    let der = der_of(&leaf.cert_pem);
    let (_, cert) = X509Certificate::from_der(&der).expect("parses");
    assert!(uris(&cert).is_empty());
}

#[test]
fn a_past_not_after_makes_an_expired_certificate() {
    let ca = CertificateAuthority::generate(TD).expect("CA");
    let mut request = IssueRequest::for_identity(&Identity::agency(TD, "x"), 1);
    request.not_before = ::time::OffsetDateTime::now_utc() - ::time::Duration::days(10);
    request.not_after = ::time::OffsetDateTime::now_utc() - ::time::Duration::days(1);
    let der = der_of(&ca.issue(&request).expect("leaf").cert_pem);
    let (_, cert) = X509Certificate::from_der(&der).expect("parses");
    assert!(!cert.validity().is_valid());
}

#[test]
fn init_dir_is_idempotent_and_keeps_keys_private() {
    let dir = tempfile::tempdir().expect("tempdir");
    let identities = [Identity::agency(TD, "a"), Identity::gateway(TD, "gateway")];
    init_dir(dir.path(), TD, &identities, 30).expect("first");
    let snapshot = |name: &str| std::fs::read(dir.path().join(name)).expect("file");
    let before: Vec<_> = ["ca.pem", "ca.key", "a.pem", "a.key", "gateway.pem"]
        .iter()
        .map(|n| snapshot(n))
        .collect();
    init_dir(dir.path(), TD, &identities, 30).expect("second");
    let after: Vec<_> = ["ca.pem", "ca.key", "a.pem", "a.key", "gateway.pem"]
        .iter()
        .map(|n| snapshot(n))
        .collect();
    assert_eq!(before, after);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for key in ["ca.key", "a.key", "gateway.key"] {
            let mode = std::fs::metadata(dir.path().join(key))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
    }
}

#[test]
fn a_loaded_ca_issues_certificates_the_original_verifies() {
    let ca = CertificateAuthority::generate(TD).expect("CA");
    let loaded = CertificateAuthority::load(ca.cert_pem(), &ca.key_pem()).expect("load");
    let leaf = loaded
        .issue(&IssueRequest::for_identity(
            &Identity::auditor(TD, "auditor"),
            1,
        ))
        .expect("leaf");
    let ca_der = der_of(ca.cert_pem());
    let leaf_der = der_of(&leaf.cert_pem);
    let (_, ca_cert) = X509Certificate::from_der(&ca_der).expect("parses");
    let (_, cert) = X509Certificate::from_der(&leaf_der).expect("parses");
    cert.verify_signature(Some(ca_cert.public_key()))
        .expect("verifies against the original");
}

#[test]
fn rejects_bad_trust_domains_and_spiffe_ids() {
    assert!(CertificateAuthority::generate("Bad Domain").is_err());
    let ca = CertificateAuthority::generate(TD).expect("CA");
    for bad in [
        "https://x/agency/a",
        "spiffe://x",
        "spiffe://X/a",
        "spiffe://x/a//b",
    ] {
        let identity = Identity {
            name: "x".into(),
            spiffe_id: bad.into(),
        };
        assert!(
            ca.issue(&IssueRequest::for_identity(&identity, 1)).is_err(),
            "{bad}"
        );
    }
}
