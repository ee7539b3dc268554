use clap::Parser;

// Local mode answers tens of thousands of requests a second, each allocating a little:
// mimalloc's per-thread heaps serve that faster than the system allocator.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    skyhost_cli::cli::main(skyhost_cli::cli::Cli::parse())
}
