//! The consent step's speed: verifying a consent token (EdDSA and ES256) the first time and
//! from the cache, against a bare signature check of the same bytes as the baseline (ring's,
//! for each algorithm, and ed25519-dalek's with the key parsed, what the verifier's EdDSA check
//! is built on); and one admission to the shared state, in process and against a real
//! redis-server on loopback, against a bare Redis PING round trip as the baseline.
//!
//! ```sh
//! cargo bench -p isnad-bench --features consent-bench --bench consent
//! ```
//!
//! Targets (issue 4): verifying a token at most 40 us; a cached token is not verified again;
//! at most one Redis round trip per request (an admission costs about one PING).

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use isnad_consent::{
    ConsentGrant, Jwks, Request, SigningAlgorithm, SigningKey, Verifier, VerifierConfig,
};
use isnad_state::testing::RedisServer;
use isnad_state::{Admission, ConsentState, ConsentUse, MemoryState, RedisOptions, RedisState};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CALLER: &str = "spiffe://isnad.example/agency/housing-programme";
const SUBJECT: &str = "784197912761950";

fn grant() -> ConsentGrant {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    ConsentGrant {
        id: "bench-consent".into(),
        issuer: "https://consent.isnad.example".into(),
        audience: "isnad.example".into(),
        subject: SUBJECT.into(),
        consumer: CALLER.into(),
        purpose: "housing-grant".into(),
        dataset: "labour.employment".into(),
        fields: vec!["occupation".into(), "contract_type".into()],
        issued_at: now - 60,
        expires_at: now + 3600,
        max_uses: Some(1_000_000_000),
        cert_sha256: Some([7; 32]),
    }
}

fn request() -> Request<'static> {
    Request {
        caller: CALLER,
        subject: SUBJECT,
        purpose: "housing-grant",
        dataset: "labour.employment",
        client_cert_sha256: Some([7; 32]),
    }
}

fn verifier(keys: &[&SigningKey], cache_entries: usize) -> Verifier {
    let jwks = Jwks::from_json(isnad_consent::jwks_json(keys).as_bytes()).expect("jwks");
    let config = VerifierConfig {
        cache_entries,
        ..VerifierConfig::new(
            "isnad.example",
            vec!["https://consent.isnad.example".into()],
        )
    };
    Verifier::new(jwks, config).expect("verifier")
}

fn tokens(c: &mut Criterion) {
    let ed = SigningKey::generate("ed", SigningAlgorithm::EdDSA).expect("key");
    let ec = SigningKey::generate("ec", SigningAlgorithm::ES256).expect("key");
    let uncached = verifier(&[&ed, &ec], 0);
    let cached = verifier(&[&ed, &ec], 10_000);
    let claims = grant().claims();
    let ed_token = ed.issue(&claims).expect("token");
    let ec_token = ec.issue(&claims).expect("token");
    let now = SystemTime::now();
    for token in [&ed_token, &ec_token] {
        uncached.verify(token, &request(), now).expect("valid");
        cached.verify(token, &request(), now).expect("valid");
    }
    // The baseline: ring's Ed25519 check of the token's own signature, nothing else.
    let (input, signature) = ed_token.rsplit_once('.').expect("three parts");
    let signature =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, signature)
            .expect("base64url");
    let public = ed.public_jwk()["x"].as_str().expect("x").to_owned();
    let public = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, public)
        .expect("base64url");
    // What the verifier's Ed25519 check is built on: ed25519-dalek with the key parsed once.
    let dalek = ed25519_dalek::VerifyingKey::from_bytes(&public.clone().try_into().expect("32"))
        .expect("a point");
    let dalek_signature = ed25519_dalek::Signature::from_slice(&signature).expect("64 bytes");
    let public = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public);
    // The ES256 baseline: ring's P-256 ECDSA check of that token's signature, nothing else.
    let (ec_input, ec_signature) = ec_token.rsplit_once('.').expect("three parts");
    let ec_signature = base64::Engine::decode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ec_signature,
    )
    .expect("base64url");
    let ec_jwk = ec.public_jwk();
    let coordinate = |name: &str| {
        base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            ec_jwk[name].as_str().expect("coordinate"),
        )
        .expect("base64url")
    };
    let mut point = vec![0x04];
    point.extend(coordinate("x"));
    point.extend(coordinate("y"));
    let ec_public =
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point);

    let mut group = c.benchmark_group("consent token");
    group.bench_function("baseline: ring Ed25519 signature check alone", |b| {
        b.iter(|| {
            public
                .verify(black_box(input.as_bytes()), &signature)
                .expect("valid")
        })
    });
    group.bench_function("ed25519-dalek signature check alone, key parsed", |b| {
        b.iter(|| {
            ed25519_dalek::Verifier::verify(&dalek, black_box(input.as_bytes()), &dalek_signature)
                .expect("valid")
        })
    });
    group.bench_function("verify EdDSA token, not cached", |b| {
        b.iter(|| black_box(uncached.verify(black_box(&ed_token), &request(), now)))
    });
    group.bench_function("baseline: ring P-256 ECDSA signature check alone", |b| {
        b.iter(|| {
            ec_public
                .verify(black_box(ec_input.as_bytes()), &ec_signature)
                .expect("valid")
        })
    });
    group.bench_function("verify ES256 token, not cached", |b| {
        b.iter(|| black_box(uncached.verify(black_box(&ec_token), &request(), now)))
    });
    group.bench_function("verify EdDSA token, cached", |b| {
        b.iter(|| black_box(cached.verify(black_box(&ed_token), &request(), now)))
    });
    group.finish();
}

fn admission(now: SystemTime) -> Admission<'static> {
    Admission {
        now,
        request: None,
        consent: Some(ConsentUse {
            id: "bench-consent",
            expires_at: now + Duration::from_secs(3600),
            max_uses: Some(u64::MAX / 2),
        }),
        rates: &[],
        agency: None,
    }
}

fn state(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let server =
        RedisServer::start().expect("redis-server (install it: apt-get install redis-server)");
    let redis = runtime
        .block_on(async { RedisState::new(&server.url(), RedisOptions::default()) })
        .expect("redis state");
    let memory = MemoryState::new();
    let now = SystemTime::now();
    runtime
        .block_on(redis.admit(&admission(now)))
        .expect("admitted");
    let mut group = c.benchmark_group("shared state");
    group.bench_function("baseline: Redis PING round trip", |b| {
        b.iter(|| runtime.block_on(redis.ping()).expect("pong"))
    });
    group.bench_function("admit a consent use, Redis", |b| {
        b.iter(|| {
            black_box(
                runtime
                    .block_on(redis.admit(&admission(now)))
                    .expect("admitted"),
            )
        })
    });
    group.bench_function("admit a consent use, in process", |b| {
        b.iter(|| {
            black_box(
                runtime
                    .block_on(memory.admit(&admission(now)))
                    .expect("admitted"),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, tokens, state);
criterion_main!(benches);
