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

/// The error convention of the API: a standard gRPC code, a message for people, and a
/// `google.rpc.ErrorInfo` detail whose `reason` is a stable code clients can match on.
pub mod errors {
    use tonic::{Code, Status};
    use tonic_types::{ErrorDetails, StatusExt};

    /// The `ErrorInfo.domain` of every isnad error.
    pub const DOMAIN: &str = "isnad.v1";

    /// A status with an `ErrorInfo` detail carrying `reason`.
    ///
    /// `message` is shown to the caller: it must never contain citizen data.
    pub fn status(code: Code, reason: &str, message: impl Into<String>) -> Status {
        let details = ErrorDetails::with_error_info(
            reason,
            DOMAIN,
            std::collections::HashMap::<String, String>::new(),
        );
        Status::with_error_details(code, message, details)
    }

    /// The stable reason code of an isnad error, if the status carries one.
    pub fn reason(status: &Status) -> Option<String> {
        let details = status.get_error_details();
        details
            .error_info()
            .filter(|info| info.domain == DOMAIN)
            .map(|info| info.reason.clone())
    }
}
