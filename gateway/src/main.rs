//! The `isnad` command: see `isnad --help`.

// glibc's allocator took about 14% of the gateway's CPU under load (bench/README.md);
// mimalloc's thread-local free lists suit the many small, short-lived allocations of HTTP/2
// and protobuf. Built without transparent huge pages (see the root Cargo.toml).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    isnad_gateway::cli::main()
}
