//! The `isnad` command: see `isnad --help`.

fn main() -> std::process::ExitCode {
    isnad_gateway::cli::main()
}
