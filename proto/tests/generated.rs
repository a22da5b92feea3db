//! The checked-in generated code must be exactly what the `.proto` files produce today.

use std::path::{Path, PathBuf};

use prost::Message;

const GENERATED: &[&str] = &["isnad.v1.rs", "isnad.v1.fds.bin"];

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Compiles the protos with protox (a Rust protobuf compiler, so no `protoc` is needed) and
/// generates Rust code into `out_dir`.
fn generate(out_dir: &Path) {
    let root = crate_dir();
    let files = [
        "isnad/v1/exchange.proto",
        "isnad/v1/provider.proto",
        "isnad/v1/admin.proto",
        "isnad/v1/audit.proto",
    ];
    let fds = protox::compile(files, [&root]).expect("the .proto files compile");
    std::fs::write(out_dir.join("isnad.v1.fds.bin"), fds.encode_to_vec()).expect("write fds");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .out_dir(out_dir)
        .compile_fds(fds)
        .expect("code generation succeeds");
}

#[test]
fn checked_in_code_matches_the_proto_files() {
    let scratch = std::env::temp_dir().join(format!("isnad-proto-gen-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    generate(&scratch);
    let checked_in = crate_dir().join("src/gen");
    let bless = std::env::var_os("ISNAD_BLESS").is_some();
    let mut stale = Vec::new();
    for name in GENERATED {
        let fresh = std::fs::read(scratch.join(name)).expect("generated file");
        let current = std::fs::read(checked_in.join(name)).unwrap_or_default();
        if fresh != current {
            if bless {
                std::fs::write(checked_in.join(name), &fresh).expect("write generated file");
            } else {
                stale.push(*name);
            }
        }
    }
    std::fs::remove_dir_all(&scratch).ok();
    assert!(
        stale.is_empty(),
        "generated code in proto/src/gen is stale ({stale:?}); \
         run `ISNAD_BLESS=1 cargo test -p isnad-proto` and commit the result"
    );
}
