//! `isnad certs`: the development PKI.

use std::path::PathBuf;

use clap::Subcommand;
use isnad_certs::{CertificateAuthority, Identity, IssueRequest, Revocation, RevocationList};

#[derive(Debug, Subcommand)]
pub(crate) enum CertsCommand {
    /// Create a CA and a certificate for every sample identity (keeps existing files).
    Init {
        /// Where to write ca.pem, ca.key, <name>.pem and <name>.key.
        #[arg(long)]
        dir: PathBuf,
        /// The federation's SPIFFE trust domain.
        #[arg(long, default_value = "isnad.example")]
        federation: String,
        /// Validity of the certificates, in days.
        #[arg(long, default_value_t = 90)]
        days: u32,
    },
    /// Issue one more certificate from the CA in DIR.
    Issue {
        /// The PKI directory (ca.pem and ca.key).
        #[arg(long)]
        dir: PathBuf,
        /// File name: writes <name>.pem and <name>.key.
        #[arg(long)]
        name: String,
        /// The SPIFFE ID, e.g. spiffe://isnad.example/agency/tax-authority.
        #[arg(long)]
        spiffe_id: String,
        /// Validity, in days.
        #[arg(long, default_value_t = 90)]
        days: u32,
    },
    /// Revoke certificates of the CA in DIR: (re)writes DIR/crl.pem, the CA's signed
    /// revocation list, with the entries it had plus these. Without NAME it only renews the
    /// list (a new number and nextUpdate).
    Revoke {
        /// The PKI directory (ca.pem, ca.key, <name>.pem, crl.pem).
        #[arg(long)]
        dir: PathBuf,
        /// The certificates to revoke, by file name (<name>.pem).
        names: Vec<String>,
        /// Days until the list's nextUpdate: gateways warn when a list in force is older.
        #[arg(long, default_value_t = 7)]
        days: u32,
    },
}

/// The identities of the sample federation.
pub(crate) fn sample_identities(federation: &str, agencies: &[&str]) -> Vec<Identity> {
    let mut identities: Vec<Identity> = agencies
        .iter()
        .map(|agency| Identity::agency(federation, agency))
        .collect();
    identities.push(Identity::auditor(federation, "auditor"));
    identities.push(Identity::admin(federation, "admin"));
    identities.push(Identity::admin(federation, super::consent::AUTHORITY_NAME));
    identities.push(Identity::gateway(federation, "gateway"));
    identities
}

/// The agencies of `deploy/local`, for `certs init` without a catalogue at hand.
const SAMPLE_AGENCIES: &[&str] = &[
    "identity-authority",
    "civil-registry",
    "labour-ministry",
    "housing-programme",
    "health-authority",
];

pub(crate) fn run(command: CertsCommand) -> anyhow::Result<()> {
    match command {
        CertsCommand::Init {
            dir,
            federation,
            days,
        } => {
            let identities = sample_identities(&federation, SAMPLE_AGENCIES);
            isnad_certs::init_dir(&dir, &federation, &identities, days)?;
            println!("development PKI in {}:", dir.display());
            for identity in identities {
                println!("  {:<20} {}", identity.name, identity.spiffe_id);
            }
        }
        CertsCommand::Issue {
            dir,
            name,
            spiffe_id,
            days,
        } => {
            let read = |file: &str| {
                let path = dir.join(file);
                std::fs::read_to_string(&path)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))
            };
            let ca = CertificateAuthority::load(&read("ca.pem")?, &read("ca.key")?)?;
            let identity = Identity {
                name: name.clone(),
                spiffe_id,
            };
            let issued = ca.issue(&IssueRequest::for_identity(&identity, days))?;
            isnad_certs::write_pair(&dir, &name, &issued)?;
            println!(
                "issued {} for {}",
                dir.join(format!("{name}.pem")).display(),
                identity.spiffe_id
            );
        }
        CertsCommand::Revoke { dir, names, days } => {
            let read = |file: &str| {
                let path = dir.join(file);
                std::fs::read_to_string(&path)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))
            };
            let ca = CertificateAuthority::load(&read("ca.pem")?, &read("ca.key")?)?;
            let crl_path = dir.join(CRL_FILE);
            let mut list = if crl_path.exists() {
                isnad_certs::read_revocation_list(&read(CRL_FILE)?)?
            } else {
                RevocationList::default()
            };
            let now = isnad_certs::OffsetDateTime::now_utc();
            for name in &names {
                let serial = isnad_certs::serial_number(&read(&format!("{name}.pem"))?)?;
                if !list.revoked.iter().any(|entry| entry.serial == serial) {
                    list.revoked.push(Revocation { serial, at: now });
                }
            }
            list.number += 1;
            let pem = ca.revocation_list(&list, days)?;
            isnad_certs::write_public_file(&crl_path, &pem)?;
            println!(
                "{}: revocation list number {} with {} certificate(s), valid {days} days",
                crl_path.display(),
                list.number,
                list.revoked.len()
            );
        }
    }
    Ok(())
}

/// The CA's revocation list in a PKI directory.
pub(crate) const CRL_FILE: &str = "crl.pem";
