//! The `k2-ingest` binary: parses the command line and hands over to the subcommand.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
