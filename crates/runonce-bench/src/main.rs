//! `runonce-bench`: runs the benchmark and prints the table (or JSON); see
//! [`runonce_bench::cli`] for the flags. `runonce bench` is the same command.

fn main() -> std::process::ExitCode {
    runonce_bench::cli::main(std::env::args().skip(1))
}
