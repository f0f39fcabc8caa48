//! The `k2-ingest` binary: parses the command line and hands over to the subcommand.

mod cli;

// Arrow batches are built on the consume thread and freed on the parquet thread: with glibc's
// allocator those frees queue on the other thread's arena lock, which left both threads idle a
// third of the time in profiles. mimalloc frees across threads without a shared lock and is
// faster for our many small allocations besides.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
