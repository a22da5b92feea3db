//! The `isnad.v1` API: messages, the `Exchange` and `Provider` services, client and server stubs.
//!
//! The code under `src/gen/` is generated from `isnad/v1/*.proto` and checked in, so building
//! needs no `protoc`. `tests/generated.rs` regenerates it and fails on any difference; run
//! `ISNAD_BLESS=1 cargo test -p isnad-proto` after changing a `.proto` file.

pub mod v1 {
    #![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
    include!("gen/isnad.v1.rs");

    /// The encoded `FileDescriptorSet` of the API, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!("gen/isnad.v1.fds.bin");
}
