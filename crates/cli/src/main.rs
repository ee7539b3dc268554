use clap::Parser;

fn main() -> std::process::ExitCode {
    skyhost_cli::cli::main(skyhost_cli::cli::Cli::parse())
}
