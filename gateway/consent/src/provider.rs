//! jsonwebtoken's cryptography for EdDSA and ES256 only: Ed25519 signature checks on
//! ed25519-dalek with parsed keys kept ([`crate::ed25519`]), everything else (ES256 checks,
//! signing, digests) on ring.

use std::sync::OnceLock;

use jsonwebtoken::crypto::{CryptoProvider, JwkUtils, JwtSigner, JwtVerifier};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::jwk::ThumbprintHash;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{self as ring_signature, EcdsaKeyPair, Ed25519KeyPair, KeyPair};

use crate::ed25519;

/// The provider: EdDSA and ES256; every other algorithm is an error.
static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: signer,
    verifier_factory: verifier,
    jwk_utils: JwkUtils {
        extract_rsa_public_key_components: |_| Err(unsupported()),
        extract_ec_public_key_coordinates: |_, _| Err(unsupported()),
        compute_digest: digest,
    },
};

/// Makes [`PROVIDER`] jsonwebtoken's provider for this process. Idempotent; call it before any
/// jsonwebtoken call. Returns an error if another provider was installed first (then this
/// crate refuses to verify rather than use it).
pub fn install() -> Result<(), &'static str> {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    let ours = *INSTALLED.get_or_init(|| match PROVIDER.install_default() {
        Ok(()) => true,
        // Installed already: ours only if it is the same static.
        Err(existing) => std::ptr::eq(existing, &PROVIDER),
    });
    if ours {
        Ok(())
    } else {
        Err(
            "another jsonwebtoken crypto provider was installed first; isnad verifies consent \
             tokens only with its own ring provider",
        )
    }
}

fn unsupported() -> Error {
    Error::from(ErrorKind::InvalidAlgorithm)
}

fn digest(data: &[u8], hash: ThumbprintHash) -> Vec<u8> {
    let algorithm = match hash {
        ThumbprintHash::SHA256 => &ring::digest::SHA256,
        ThumbprintHash::SHA384 => &ring::digest::SHA384,
        ThumbprintHash::SHA512 => &ring::digest::SHA512,
    };
    ring::digest::digest(algorithm, data).as_ref().to_vec()
}

/// A public key and the one algorithm it verifies.
enum Verifier {
    /// `None` for bytes that are no usable Ed25519 key: every signature fails, as with ring.
    Ed25519(Option<ed25519::PublicKey>),
    P256(ring_signature::UnparsedPublicKey<Vec<u8>>),
}

impl signature::Verifier<Vec<u8>> for Verifier {
    fn verify(&self, message: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        let valid = match self {
            Verifier::Ed25519(key) => key.is_some_and(|key| key.verify(message, signature)),
            Verifier::P256(key) => key.verify(message, signature).is_ok(),
        };
        if valid {
            Ok(())
        } else {
            Err(signature::Error::new())
        }
    }
}

impl JwtVerifier for Verifier {
    fn algorithm(&self) -> Algorithm {
        match self {
            Verifier::Ed25519(_) => Algorithm::EdDSA,
            Verifier::P256(_) => Algorithm::ES256,
        }
    }
}

fn verifier(
    algorithm: &Algorithm,
    key: &DecodingKey,
) -> jsonwebtoken::errors::Result<Box<dyn JwtVerifier>> {
    Ok(Box::new(match algorithm {
        Algorithm::EdDSA => Verifier::Ed25519(ed25519::PublicKey::cached(key.as_bytes()).ok()),
        Algorithm::ES256 => Verifier::P256(ring_signature::UnparsedPublicKey::new(
            &ring_signature::ECDSA_P256_SHA256_FIXED,
            key.as_bytes().to_vec(),
        )),
        _ => return Err(unsupported()),
    }))
}

/// A ring private key (from PKCS#8) and its algorithm.
enum Signer {
    Ed25519(Ed25519KeyPair),
    P256(EcdsaKeyPair),
}

impl signature::Signer<Vec<u8>> for Signer {
    fn try_sign(&self, message: &[u8]) -> Result<Vec<u8>, signature::Error> {
        match self {
            Signer::Ed25519(pair) => Ok(pair.sign(message).as_ref().to_vec()),
            Signer::P256(pair) => pair
                .sign(&SystemRandom::new(), message)
                .map(|signature| signature.as_ref().to_vec())
                .map_err(|_| signature::Error::new()),
        }
    }
}

impl JwtSigner for Signer {
    fn algorithm(&self) -> Algorithm {
        match self {
            Signer::Ed25519(_) => Algorithm::EdDSA,
            Signer::P256(_) => Algorithm::ES256,
        }
    }
}

fn signer(
    algorithm: &Algorithm,
    key: &EncodingKey,
) -> jsonwebtoken::errors::Result<Box<dyn JwtSigner>> {
    let invalid = || Error::from(ErrorKind::InvalidKeyFormat);
    match algorithm {
        Algorithm::EdDSA => Ed25519KeyPair::from_pkcs8(key.inner())
            .map(|pair| Box::new(Signer::Ed25519(pair)) as Box<dyn JwtSigner>)
            .map_err(|_| invalid()),
        Algorithm::ES256 => EcdsaKeyPair::from_pkcs8(
            &ring_signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            key.inner(),
            &SystemRandom::new(),
        )
        .map(|pair| Box::new(Signer::P256(pair)) as Box<dyn JwtSigner>)
        .map_err(|_| invalid()),
        _ => Err(unsupported()),
    }
}

/// The raw public key of a PKCS#8 Ed25519 key pair (for the JWKS of a consent authority).
pub fn ed25519_public(pkcs8: &[u8]) -> Option<Vec<u8>> {
    Ed25519KeyPair::from_pkcs8(pkcs8)
        .ok()
        .map(|pair| pair.public_key().as_ref().to_vec())
}

/// The public key (uncompressed point) of a PKCS#8 P-256 key pair.
pub fn p256_public(pkcs8: &[u8]) -> Option<Vec<u8>> {
    EcdsaKeyPair::from_pkcs8(
        &ring_signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        pkcs8,
        &SystemRandom::new(),
    )
    .ok()
    .map(|pair| pair.public_key().as_ref().to_vec())
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    /// RFC 8032, section 7.1, test 2: the public key, the message and the signature.
    const PUBLIC: &str = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";
    const SIGNATURE: &str = "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da\
                             085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00";

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
            .collect()
    }

    fn check(public: &[u8], message: &[u8], signature: &[u8]) -> bool {
        install().expect("our provider");
        jsonwebtoken::crypto::verify(
            &URL_SAFE_NO_PAD.encode(signature),
            message,
            &DecodingKey::from_ed_der(public),
            Algorithm::EdDSA,
        )
        .expect("EdDSA is supported")
    }

    #[test]
    fn jsonwebtoken_checks_ed25519_through_the_provider_as_ring_does() {
        let (public, signature) = (hex(PUBLIC), hex(SIGNATURE));
        let ring = ring_signature::UnparsedPublicKey::new(&ring_signature::ED25519, &public);
        assert!(ring.verify(&[0x72], &signature).is_ok());
        // Twice: parsed, then from the table of parsed keys.
        assert!(check(&public, &[0x72], &signature));
        assert!(check(&public, &[0x72], &signature));
        assert!(!check(&public, &[0x73], &signature));
        let mut tampered = signature.clone();
        tampered[40] ^= 4;
        assert!(ring.verify(&[0x72], &tampered).is_err());
        assert!(!check(&public, &[0x72], &tampered));
        // A key of small order (the identity) and a key of 31 bytes verify nothing.
        let mut identity = [0; 32];
        identity[0] = 1;
        assert!(!check(&identity, &[0x72], &signature));
        assert!(!check(&public[..31], &[0x72], &signature));
    }
}
