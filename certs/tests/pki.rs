//! The development PKI issues what the federation's naming contract says.

use std::net::IpAddr;
use std::path::Path;

use isnad_certs::{
    CertificateAuthority, Error, Identity, IssueRequest, IssuedCert, init_dir, write_pair,
};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::pem::parse_x509_pem;
use x509_parser::prelude::*;

const TD: &str = "isnad.example";

fn der_of(pem: &str) -> Vec<u8> {
    let (rest, pem) = parse_x509_pem(pem.as_bytes()).expect("PEM");
    assert!(rest.is_empty(), "one PEM block and nothing else");
    assert_eq!(pem.label, "CERTIFICATE");
    pem.contents
}

fn parse(der: &[u8]) -> X509Certificate<'_> {
    let (rest, cert) = X509Certificate::from_der(der).expect("certificate parses");
    assert!(rest.is_empty());
    cert
}

fn names<'a>(cert: &X509Certificate<'a>) -> Vec<GeneralName<'a>> {
    cert.subject_alternative_name()
        .expect("SAN parses")
        .map(|san| san.value.general_names.clone())
        .unwrap_or_default()
}

fn uris(cert: &X509Certificate<'_>) -> Vec<String> {
    names(cert)
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some((*u).to_owned()),
            _ => None,
        })
        .collect()
}

fn common_name(name: &X509Name<'_>) -> String {
    let cns: Vec<_> = name
        .iter_common_name()
        .map(|cn| cn.as_str().expect("UTF-8").to_owned())
        .collect();
    assert_eq!(cns.len(), 1);
    cns[0].clone()
}

fn subject_key_id(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        })
}

fn authority_key_id(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|id| id.0.to_vec())
            }
            _ => None,
        })
}

/// Signature, issuer name and key identifier: what a verifier needs to build the chain.
fn assert_chains(leaf_pem: &str, ca_pem: &str) {
    let (ca_der, leaf_der) = (der_of(ca_pem), der_of(leaf_pem));
    let (ca, leaf) = (parse(&ca_der), parse(&leaf_der));
    leaf.verify_signature(Some(ca.public_key()))
        .expect("signed by the CA");
    assert_eq!(leaf.issuer().as_raw(), ca.subject().as_raw());
    assert_eq!(authority_key_id(&leaf), subject_key_id(&ca));
    assert!(subject_key_id(&ca).is_some());
}

fn leaf_for(ca: &CertificateAuthority, identity: &Identity) -> IssuedCert {
    ca.issue(&IssueRequest::for_identity(identity, 30))
        .expect("leaf")
}

#[test]
fn the_ca_is_self_signed_with_path_length_zero_and_signing_key_usages() {
    let ca = CertificateAuthority::generate(TD).expect("CA");
    let der = der_of(ca.cert_pem());
    let cert = parse(&der);
    cert.verify_signature(None).expect("self-signed");
    assert_eq!(cert.subject().as_raw(), cert.issuer().as_raw());
    let constraints = cert
        .basic_constraints()
        .expect("parses")
        .expect("present")
        .value;
    assert!(constraints.ca);
    assert_eq!(constraints.path_len_constraint, Some(0));
    let usage = cert.key_usage().expect("parses").expect("present").value;
    assert!(usage.key_cert_sign() && usage.crl_sign() && usage.digital_signature());
    assert_eq!(common_name(cert.subject()), "isnad.example development CA");
    let orgs: Vec<_> = cert
        .subject()
        .iter_organization()
        .map(|o| o.as_str().expect("UTF-8").to_owned())
        .collect();
    assert_eq!(orgs, ["isnad development federation"]);
    assert!(cert.validity().is_valid());
    let years = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    assert!(years > 9 * 365 * 86_400, "valid for about ten years");
}

#[test]
fn a_leaf_chains_to_the_ca_and_carries_one_spiffe_id() {
    let ca = CertificateAuthority::generate(TD).expect("CA");
    let identity = Identity::agency(TD, "housing-programme");
    let leaf = leaf_for(&ca, &identity);
    assert_chains(&leaf.cert_pem, ca.cert_pem());
    let der = der_of(&leaf.cert_pem);
    let cert = parse(&der);
    assert_eq!(
        uris(&cert),
        ["spiffe://isnad.example/agency/housing-programme"]
    );
    assert!(!cert.is_ca());
    let constraints = cert.basic_constraints().expect("parses").map(|c| c.value);
    assert!(constraints.is_none_or(|c| !c.ca));
    let eku = cert
        .extended_key_usage()
        .expect("EKU parses")
        .expect("present")
        .value;
    assert!(eku.server_auth && eku.client_auth);
    let usage = cert.key_usage().expect("parses").expect("present").value;
    assert!(usage.digital_signature());
    assert!(!usage.key_cert_sign() && !usage.crl_sign());
    assert!(cert.validity().is_valid());
    assert_eq!(common_name(cert.subject()), "housing-programme");
}

#[test]
fn a_leaf_can_be_reached_on_loopback_by_name_and_address() {
    let ca = CertificateAuthority::generate(TD).expect("CA");
    let leaf = leaf_for(&ca, &Identity::gateway(TD, "gateway"));
    let der = der_of(&leaf.cert_pem);
    let cert = parse(&der);
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    for name in names(&cert) {
        match name {
            GeneralName::DNSName(d) => dns.push(d.to_owned()),
            GeneralName::IPAddress(bytes) => ips.push(match bytes.len() {
                4 => IpAddr::from(<[u8; 4]>::try_from(bytes).expect("v4")),
                _ => IpAddr::from(<[u8; 16]>::try_from(bytes).expect("v6")),
            }),
            GeneralName::URI(_) => {}
            other => panic!("unexpected SAN {other:?}"),
        }
    }
    assert_eq!(dns, ["localhost"]);
    assert_eq!(
        ips,
        [
            "127.0.0.1".parse::<IpAddr>().expect("v4"),
            "::1".parse().expect("v6")
        ]
    );
}

#[test]
fn leaf_and_ca_keys_are_ecdsa_p256_in_pkcs8() {
    let ca = CertificateAuthority::generate(TD).expect("CA");
    let leaf = leaf_for(&ca, &Identity::admin(TD, "admin"));
    assert!(leaf.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(ca.key_pem().starts_with("-----BEGIN PRIVATE KEY-----"));
    for pem in [leaf.cert_pem.as_str(), ca.cert_pem()] {
        let der = der_of(pem);
        let cert = parse(&der);
        let spki = cert.public_key();
        assert_eq!(
            spki.algorithm.algorithm,
            x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY
        );
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .expect("curve")
            .as_oid()
            .expect("named curve");
        assert_eq!(curve, x509_parser::oid_registry::OID_EC_P256);
        assert_eq!(
            cert.signature_algorithm.algorithm,
            x509_parser::oid_registry::OID_SIG_ECDSA_WITH_SHA256
        );
    }
}

#[test]
fn identities_follow_the_spiffe_naming_scheme() {
    let cases = [
        (Identity::agency(TD, "civil-registry"), "agency"),
        (Identity::auditor(TD, "auditor"), "auditor"),
        (Identity::admin(TD, "admin"), "admin"),
        (Identity::gateway(TD, "node-2"), "gateway"),
    ];
    for (identity, kind) in cases {
        assert_eq!(
            identity.spiffe_id,
            format!("spiffe://isnad.example/{kind}/{}", identity.name)
        );
    }
    assert_eq!(Identity::gateway(TD, "node-2").name, "node-2");
    assert_eq!(
        Identity::agency(TD, "civil-registry").name,
        "civil-registry"
    );
}

#[test]
fn a_request_without_spiffe_id_has_no_uri_san() {
    let ca = CertificateAuthority::generate(TD).expect("CA");
    let mut request = IssueRequest::for_identity(&Identity::agency(TD, "x"), 1);
    request.spiffe_id = None;
    let leaf = ca.issue(&request).expect("leaf");
    let der = der_of(&leaf.cert_pem);
    let cert = parse(&der);
    assert!(uris(&cert).is_empty());
    assert!(!names(&cert).is_empty(), "still has the loopback names");
}

#[test]
fn a_past_not_after_makes_an_expired_certificate() {
    let ca = CertificateAuthority::generate(TD).expect("CA");
    let mut request = IssueRequest::for_identity(&Identity::agency(TD, "x"), 1);
    request.not_before = ::time::OffsetDateTime::now_utc() - ::time::Duration::days(10);
    request.not_after = ::time::OffsetDateTime::now_utc() - ::time::Duration::days(1);
    let der = der_of(&ca.issue(&request).expect("leaf").cert_pem);
    let cert = parse(&der);
    assert!(!cert.validity().is_valid());
    assert!(cert.validity().time_to_expiration().is_none());
}

#[test]
fn a_validity_that_ends_before_it_starts_is_rejected() {
    let ca = CertificateAuthority::generate(TD).expect("CA");
    let mut request = IssueRequest::for_identity(&Identity::agency(TD, "x"), 1);
    request.not_after = request.not_before;
    assert!(matches!(
        ca.issue(&request),
        Err(Error::InvalidValidity { .. })
    ));
}

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|entry| {
            let entry = entry.expect("entry");
            (
                entry.file_name().to_string_lossy().into_owned(),
                std::fs::read(entry.path()).expect("file"),
            )
        })
        .collect();
    files.sort();
    files
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn init_dir_is_idempotent_and_keeps_keys_private() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("pki");
    let identities = [Identity::agency(TD, "a"), Identity::gateway(TD, "gateway")];
    init_dir(&dir, TD, &identities, 30).expect("first");
    let before = snapshot(&dir);
    let files: Vec<_> = before.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        files,
        [
            "a.key",
            "a.pem",
            "ca.key",
            "ca.pem",
            "gateway.key",
            "gateway.pem"
        ],
        "no temporary files left behind"
    );
    init_dir(&dir, TD, &identities, 30).expect("second");
    assert_eq!(before, snapshot(&dir), "a second call changes nothing");
    #[cfg(unix)]
    for key in ["ca.key", "a.key", "gateway.key"] {
        assert_eq!(mode(&dir.join(key)), 0o600, "{key}");
    }
    let ca_pem = std::fs::read_to_string(dir.join("ca.pem")).expect("ca.pem");
    for name in ["a", "gateway"] {
        let leaf = std::fs::read_to_string(dir.join(format!("{name}.pem"))).expect("pem");
        assert_chains(&leaf, &ca_pem);
    }
}

#[test]
fn init_dir_keeps_the_ca_and_issues_only_what_is_missing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let a = Identity::agency(TD, "a");
    init_dir(dir, TD, std::slice::from_ref(&a), 30).expect("first");
    let (ca_pem, a_pem) = (
        std::fs::read(dir.join("ca.pem")).expect("ca"),
        std::fs::read(dir.join("a.pem")).expect("a"),
    );
    std::fs::remove_file(dir.join("a.key")).expect("remove");
    let b = Identity::auditor(TD, "b");
    let ca = init_dir(dir, TD, &[a, b], 30).expect("second");
    assert_eq!(std::fs::read(dir.join("ca.pem")).expect("ca"), ca_pem);
    assert_eq!(ca.cert_pem().as_bytes(), ca_pem.as_slice());
    assert_ne!(
        std::fs::read(dir.join("a.pem")).expect("a"),
        a_pem,
        "a pair with a missing half is reissued"
    );
    assert!(dir.join("a.key").exists());
    let ca_pem = String::from_utf8(ca_pem).expect("UTF-8");
    for name in ["a", "b"] {
        let leaf = std::fs::read_to_string(dir.join(format!("{name}.pem"))).expect("pem");
        assert_chains(&leaf, &ca_pem);
    }
}

#[test]
fn init_dir_refuses_a_directory_with_half_a_ca() {
    let tmp = tempfile::tempdir().expect("tempdir");
    init_dir(tmp.path(), TD, &[], 30).expect("first");
    let ca_pem = std::fs::read(tmp.path().join("ca.pem")).expect("ca.pem");
    std::fs::remove_file(tmp.path().join("ca.key")).expect("remove");
    let error = init_dir(tmp.path(), TD, &[Identity::agency(TD, "a")], 30)
        .expect_err("must not replace the CA");
    assert!(matches!(error, Error::IncompleteCa { .. }), "{error}");
    assert!(error.to_string().contains("ca.key"), "{error}");
    assert_eq!(
        std::fs::read(tmp.path().join("ca.pem")).expect("ca.pem"),
        ca_pem
    );
    assert!(!tmp.path().join("a.pem").exists());
}

#[test]
fn init_dir_rejects_invalid_names_before_writing_anything() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("pki");
    assert!(matches!(
        init_dir(&dir, "Isnad.Example", &[], 30),
        Err(Error::InvalidTrustDomain(_))
    ));
    assert!(matches!(
        init_dir(&dir, TD, &[Identity::agency(TD, "../escape")], 30),
        Err(Error::InvalidName { .. })
    ));
    let bad_id = Identity {
        name: "a".into(),
        spiffe_id: "https://isnad.example/agency/a".into(),
    };
    assert!(matches!(
        init_dir(&dir, TD, &[bad_id], 30),
        Err(Error::InvalidSpiffeId { .. })
    ));
    assert!(!dir.exists());
}

#[test]
fn write_pair_writes_the_certificate_alone_and_a_private_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("new").join("dir");
    let ca = CertificateAuthority::generate(TD).expect("CA");
    let leaf = leaf_for(&ca, &Identity::agency(TD, "a"));
    write_pair(&dir, "a", &leaf).expect("write");
    assert_eq!(
        std::fs::read_to_string(dir.join("a.pem")).expect("pem"),
        leaf.cert_pem
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("a.key")).expect("key"),
        leaf.key_pem
    );
    #[cfg(unix)]
    assert_eq!(mode(&dir.join("a.key")), 0o600);
    // Overwriting keeps the key private.
    let again = leaf_for(&ca, &Identity::agency(TD, "a"));
    write_pair(&dir, "a", &again).expect("overwrite");
    assert_eq!(
        std::fs::read_to_string(dir.join("a.key")).expect("key"),
        again.key_pem
    );
    #[cfg(unix)]
    assert_eq!(mode(&dir.join("a.key")), 0o600);
    assert_eq!(snapshot(&dir).len(), 2, "no temporary files left behind");
    for bad in ["../a", "a/b", "", "..", "A"] {
        assert!(
            matches!(write_pair(&dir, bad, &leaf), Err(Error::InvalidName { .. })),
            "{bad:?}"
        );
    }
}

#[test]
fn a_loaded_ca_issues_certificates_the_original_verifies() {
    let ca = CertificateAuthority::generate(TD).expect("CA");
    let loaded = CertificateAuthority::load(ca.cert_pem(), &ca.key_pem()).expect("load");
    assert_eq!(loaded.cert_pem(), ca.cert_pem());
    assert_eq!(loaded.key_pem(), ca.key_pem());
    let leaf = leaf_for(&loaded, &Identity::auditor(TD, "auditor"));
    assert_chains(&leaf.cert_pem, ca.cert_pem());
}

#[test]
fn a_ca_written_by_init_dir_loads_and_issues_chaining_certificates() {
    let tmp = tempfile::tempdir().expect("tempdir");
    init_dir(tmp.path(), TD, &[], 30).expect("init");
    let read = |f: &str| std::fs::read_to_string(tmp.path().join(f)).expect("file");
    let loaded = CertificateAuthority::load(&read("ca.pem"), &read("ca.key")).expect("load");
    let leaf = leaf_for(&loaded, &Identity::agency(TD, "labour-ministry"));
    assert_chains(&leaf.cert_pem, &read("ca.pem"));
}

#[test]
fn load_refuses_a_key_of_another_ca_and_a_leaf_certificate() {
    let ca = CertificateAuthority::generate(TD).expect("CA");
    let other = CertificateAuthority::generate(TD).expect("CA");
    let error = CertificateAuthority::load(ca.cert_pem(), &other.key_pem())
        .expect_err("the key does not belong to the certificate");
    assert!(matches!(error, Error::InvalidCa { .. }), "{error}");
    assert!(error.to_string().contains("does not belong"), "{error}");
    let leaf = leaf_for(&ca, &Identity::agency(TD, "a"));
    let error = CertificateAuthority::load(&leaf.cert_pem, &leaf.key_pem)
        .expect_err("a leaf cannot sign certificates");
    assert!(matches!(error, Error::InvalidCa { .. }), "{error}");
    assert!(error.to_string().contains("keyCertSign"), "{error}");
    assert!(CertificateAuthority::load("not a certificate", &ca.key_pem()).is_err());
    assert!(CertificateAuthority::load(ca.cert_pem(), "not a key").is_err());
}

#[test]
fn rejects_bad_trust_domains_and_spiffe_ids() {
    for bad in [
        "Bad Domain",
        "",
        "Isnad.example",
        "isnad.example/x",
        "a:443",
    ] {
        assert!(
            matches!(
                CertificateAuthority::generate(bad),
                Err(Error::InvalidTrustDomain(_))
            ),
            "{bad:?}"
        );
    }
    let ca = CertificateAuthority::generate(TD).expect("CA");
    for bad in [
        "https://x/agency/a",
        "spiffe://x",
        "spiffe://x/",
        "spiffe://X/a",
        "spiffe://x/a//b",
        "spiffe://x/agency/../admin",
        "spiffe://x/agency/a?q=1",
        "spiffe:///agency/a",
    ] {
        let identity = Identity {
            name: "x".into(),
            spiffe_id: bad.into(),
        };
        assert!(
            matches!(
                ca.issue(&IssueRequest::for_identity(&identity, 1)),
                Err(Error::InvalidSpiffeId { .. })
            ),
            "{bad}"
        );
    }
}

#[test]
fn debug_output_never_shows_a_private_key() {
    let ca = CertificateAuthority::generate(TD).expect("CA");
    let leaf = leaf_for(&ca, &Identity::agency(TD, "a"));
    for debug in [format!("{ca:?}"), format!("{leaf:?}")] {
        assert!(!debug.contains("PRIVATE KEY"), "{debug}");
    }
    let ca_key_body: String = ca.key_pem().lines().nth(1).expect("body").to_owned();
    assert!(!format!("{ca:?}").contains(&ca_key_body));
}
