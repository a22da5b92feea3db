//! Ed25519 signature checks for consent tokens, on ed25519-dalek, with parsed keys kept.
//!
//! **Why not ring here.** ring's Ed25519 check takes 47 to 56 us on the gateway's machines;
//! ed25519-dalek 2 (curve25519-dalek 4, its AVX2 backend chosen at run time) takes about 33 us
//! once the public key is decompressed. jsonwebtoken hands a provider the key's raw bytes on
//! every call, so the decompressed keys are kept here, by their bytes, in a small bounded table:
//! a trusted key is parsed once (decompressing it costs about 4 us).
//!
//! **As strict as `verify_strict`, without its second decompression.** A signature is refused
//! when its `s` is not below the group order, when its `R` is not the canonical encoding of the
//! point recomputed from `s`, the key and the message (`R` is compared as bytes, as ring does),
//! when `R` is a point of small order, and when the key is of small order (such a key is refused
//! when it is parsed, and by [`crate::Jwks`] when the file is read). ed25519-dalek's
//! `verify_strict` checks `R`'s order by decompressing it, about 5 us per signature; here `R` is
//! compared with the canonical encodings of the eight small-order points instead (the only
//! encodings of them that can pass the byte comparison), which refuses exactly the same
//! signatures. ring accepts small-order keys and `R`s (its check is the cofactorless equation
//! only); these checks are stricter than it, never looser.

use std::sync::{LazyLock, Mutex, PoisonError};

use curve25519_dalek::constants::EIGHT_TORSION;
use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};

/// How many parsed keys are kept. A JWKS holds a handful (rotation keeps two or three per
/// authority); only keys of the trusted set reach the provider, so this is never a hot path.
const KEYS_KEPT: usize = 64;

/// The canonical encodings of the eight points of small order.
static SMALL_ORDER: LazyLock<[[u8; 32]; 8]> =
    LazyLock::new(|| EIGHT_TORSION.map(|point| point.compress().to_bytes()));

/// Why a public key cannot verify anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum KeyError {
    #[error("is not 32 bytes")]
    Length,
    #[error("is not the encoding of a point on the Ed25519 curve")]
    NotAPoint,
    #[error("is a point of small order (a weak key that verifies forged signatures)")]
    SmallOrder,
}

/// A public key, decompressed and checked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Decompresses `raw` (32 bytes) and refuses a point of small order.
    pub(crate) fn parse(raw: &[u8]) -> Result<PublicKey, KeyError> {
        let raw: &[u8; 32] = raw.try_into().map_err(|_| KeyError::Length)?;
        let key = VerifyingKey::from_bytes(raw).map_err(|_| KeyError::NotAPoint)?;
        if key.is_weak() {
            return Err(KeyError::SmallOrder);
        }
        Ok(PublicKey(key))
    }

    /// The key for `raw`, parsed once and then kept (at most [`KEYS_KEPT`] keys; past that the
    /// oldest is dropped).
    pub(crate) fn cached(raw: &[u8]) -> Result<PublicKey, KeyError> {
        static KEPT: Mutex<Kept> = Mutex::new(Kept {
            keys: Vec::new(),
            next: 0,
        });
        let lock = || KEPT.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(key) = lock().get(raw) {
            return Ok(key);
        }
        let key = PublicKey::parse(raw)?;
        lock().insert(key);
        Ok(key)
    }

    /// Whether `signature` is `message`'s strict Ed25519 signature under this key.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(signature) = <&[u8; 64]>::try_from(signature) else {
            return false;
        };
        if SMALL_ORDER.iter().any(|r| r[..] == signature[..32]) {
            return false;
        }
        // Refuses an `s` that is not reduced, and compares the recomputed R's encoding with R's
        // bytes.
        self.0
            .verify(message, &Signature::from_bytes(signature))
            .is_ok()
    }
}

/// Parsed keys by their raw bytes, replaced in turn once full.
struct Kept {
    keys: Vec<PublicKey>,
    next: usize,
}

impl Kept {
    fn get(&self, raw: &[u8]) -> Option<PublicKey> {
        self.keys
            .iter()
            .find(|key| key.0.as_bytes()[..] == *raw)
            .copied()
    }

    fn insert(&mut self, key: PublicKey) {
        if self.get(key.0.as_bytes()).is_some() {
            return;
        }
        if self.keys.len() < KEYS_KEPT {
            self.keys.push(key);
        } else {
            self.keys[self.next] = key;
            self.next = (self.next + 1) % KEYS_KEPT;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::{EdwardsPoint, Scalar};
    use ring::rand::{SecureRandom, SystemRandom};
    use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
    use sha2::{Digest, Sha512};

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
            .collect()
    }

    fn ring_accepts(public: &[u8], message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, public)
            .verify(message, signature)
            .is_ok()
    }

    fn accepts(public: &[u8], message: &[u8], signature: &[u8]) -> bool {
        PublicKey::parse(public).is_ok_and(|key| key.verify(message, signature))
    }

    /// RFC 8032, section 7.1, tests 1 to 3: (secret key, public key, message, signature).
    const RFC_8032: [(&str, &str, &str, &str); 3] = [
        (
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            "",
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        ),
        (
            "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            "72",
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        ),
        (
            "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
            "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
            "af82",
            "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
        ),
    ];

    #[test]
    fn accepts_the_rfc_8032_test_vectors_as_ring_does() {
        for (secret, public, message, signature) in RFC_8032 {
            let (secret, public) = (hex(secret), hex(public));
            let (message, signature) = (hex(message), hex(signature));
            // The vectors are what ring computes from the same secret key.
            let pair = Ed25519KeyPair::from_seed_and_public_key(&secret, &public).expect("pair");
            assert_eq!(pair.sign(&message).as_ref(), &signature[..]);
            assert!(ring_accepts(&public, &message, &signature));
            assert!(accepts(&public, &message, &signature));
            assert!(PublicKey::cached(&public).is_ok_and(|key| key.verify(&message, &signature)));
        }
    }

    #[test]
    fn agrees_with_ring_on_its_signatures_and_on_tampered_ones() {
        let random = SystemRandom::new();
        for round in 0..64 {
            let mut seed = [0; 32];
            let mut message = vec![0; round * 13];
            random.fill(&mut seed).expect("random");
            random.fill(&mut message).expect("random");
            let pair = Ed25519KeyPair::from_seed_unchecked(&seed).expect("pair");
            let public = pair.public_key().as_ref();
            let signature = pair.sign(&message).as_ref().to_vec();
            assert!(ring_accepts(public, &message, &signature));
            assert!(accepts(public, &message, &signature));
            // One bit flipped anywhere in the signature, the message or the key.
            let bit = round * 7;
            let mut tampered = signature.clone();
            tampered[bit / 8 % 64] ^= 1 << (bit % 8);
            assert!(!ring_accepts(public, &message, &tampered));
            assert!(!accepts(public, &message, &tampered));
            if !message.is_empty() {
                let mut other = message.clone();
                other[bit / 8 % message.len()] ^= 1 << (bit % 8);
                assert!(!accepts(public, &other, &signature));
            }
            let mut key = public.to_vec();
            key[bit / 8 % 32] ^= 1 << (bit % 8);
            assert!(!accepts(&key, &message, &signature));
            assert!(!accepts(public, &message, &signature[..63]));
        }
    }

    /// The secret scalar of an Ed25519 seed (RFC 8032, 5.1.5).
    fn secret_scalar(seed: &[u8; 32]) -> Scalar {
        let hash = Sha512::digest(seed);
        let mut bits: [u8; 32] = hash[..32].try_into().expect("32 bytes");
        bits[0] &= 248;
        bits[31] &= 127;
        bits[31] |= 64;
        Scalar::from_bytes_mod_order(bits)
    }

    /// A signature with the given `R` bytes whose `s` satisfies `s B = R' + k A` for `R'` the
    /// identity: `s = k a`.
    fn sign_with_identity(seed: &[u8; 32], public: &[u8], r: [u8; 32], message: &[u8]) -> Vec<u8> {
        let k = Scalar::from_bytes_mod_order_wide(
            &Sha512::new()
                .chain_update(r)
                .chain_update(public)
                .chain_update(message)
                .finalize()
                .into(),
        );
        let s = k * secret_scalar(seed);
        [r, s.to_bytes()].concat()
    }

    #[test]
    fn refuses_a_signature_whose_r_has_small_order() {
        let seed = [5; 32];
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed).expect("pair");
        let public = pair.public_key().as_ref();
        let a = EdwardsPoint::mul_base(&secret_scalar(&seed));
        assert_eq!(a.compress().as_bytes(), public);
        let identity = EdwardsPoint::default().compress().to_bytes();
        let forged = sign_with_identity(&seed, public, identity, b"a consent");
        // The cofactorless equation holds (dalek's plain `verify`, and ring, accept it)...
        let key = VerifyingKey::from_bytes(public.try_into().expect("32 bytes")).expect("key");
        let signature = Signature::from_slice(&forged).expect("64 bytes");
        assert!(key.verify(b"a consent", &signature).is_ok());
        // ...but R is of small order: refused, as ed25519-dalek's verify_strict refuses it.
        assert!(key.verify_strict(b"a consent", &signature).is_err());
        assert!(!accepts(public, b"a consent", &forged));
        // Every small-order R is refused before the equation is computed.
        for r in *SMALL_ORDER {
            let forged = sign_with_identity(&seed, public, r, b"a consent");
            assert!(!accepts(public, b"a consent", &forged));
        }
    }

    #[test]
    fn refuses_non_canonical_r_and_s_as_ring_does() {
        let seed = [6; 32];
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed).expect("pair");
        let public = pair.public_key().as_ref();
        // The identity encoded with its sign bit set (x = -0): the same point, not canonical.
        let mut r = [0; 32];
        r[0] = 1;
        r[31] = 0x80;
        let forged = sign_with_identity(&seed, public, r, b"m");
        assert!(!ring_accepts(public, b"m", &forged));
        assert!(!accepts(public, b"m", &forged));
        // s + L: the same signature with its scalar not reduced.
        let signature = pair.sign(b"m").as_ref().to_vec();
        let order = hex("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010");
        let mut unreduced = signature.clone();
        let mut carry = 0u16;
        for (byte, add) in unreduced[32..].iter_mut().zip(&order) {
            let sum = u16::from(*byte) + u16::from(*add) + carry;
            *byte = sum as u8;
            carry = sum >> 8;
        }
        assert_ne!(unreduced, signature);
        assert!(!ring_accepts(public, b"m", &unreduced));
        assert!(!accepts(public, b"m", &unreduced));
    }

    #[test]
    fn refuses_keys_of_small_order_and_bytes_that_are_no_point() {
        for point in EIGHT_TORSION {
            let raw = point.compress().to_bytes();
            assert_eq!(PublicKey::parse(&raw).err(), Some(KeyError::SmallOrder));
            assert_eq!(PublicKey::cached(&raw).err(), Some(KeyError::SmallOrder));
        }
        // The identity as a key: any message "verifies" with R = s B under the cofactorless
        // equation alone (ring accepts this).
        let mut identity = [0; 32];
        identity[0] = 1;
        let s = Scalar::from(9u8);
        let forged = [
            EdwardsPoint::mul_base(&s).compress().to_bytes(),
            s.to_bytes(),
        ]
        .concat();
        assert!(!accepts(&identity, b"anything", &forged));
        // y = 2 is on no point of the curve; neither is a key of 31 bytes.
        let mut two = [0; 32];
        two[0] = 2;
        assert_eq!(PublicKey::parse(&two).err(), Some(KeyError::NotAPoint));
        assert_eq!(PublicKey::parse(&[9; 31]).err(), Some(KeyError::Length));
    }

    #[test]
    fn the_table_of_parsed_keys_is_bounded() {
        let mut kept = Kept {
            keys: Vec::new(),
            next: 0,
        };
        let keys: Vec<PublicKey> = (1..=KEYS_KEPT as u64 + 10)
            .map(|i| PublicKey(VerifyingKey::from(EdwardsPoint::mul_base(&Scalar::from(i)))))
            .collect();
        for key in &keys {
            kept.insert(*key);
            kept.insert(*key);
        }
        assert_eq!(kept.keys.len(), KEYS_KEPT);
        let present = |key: &PublicKey| kept.get(key.0.as_bytes()).is_some();
        assert!(keys[..10].iter().all(|key| !present(key)));
        assert!(keys[10..].iter().all(present));
    }
}
