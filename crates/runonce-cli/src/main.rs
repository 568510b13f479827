//! `runonce`: a thin command line over the runonce library.
//!
//! One-shot commands (`trigger`, `batch`, `lookup`, `complete`, `release`,
//! `reset`) print one JSON document on stdout and exit with
//! 0 (success), 1 (backend unavailable or other failure), 2 (invalid input;
//! nothing was written) or 3 (payload mismatch). Error messages go to stderr,
//! prefixed `error: `. `demo` shows many worker processes deduplicating
//! through one Redis.

mod cli;
mod commands;
mod demo;
mod error;
mod output;
mod worker;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::error::CliError;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let g = &cli.global;
    match &cli.command {
        Command::Demo(a) => return demo::run(g, a),
        Command::Worker(a) => return worker::run_process(g, a),
        _ => {}
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(CliError::failure(format!("cannot start the runtime: {e}"))),
    };
    let result = rt.block_on(async {
        match &cli.command {
            Command::Trigger(a) => commands::trigger(g, a).await,
            Command::Batch(a) => commands::batch(g, a, std::io::stdin().lock()).await,
            Command::Lookup(a) => commands::lookup(g, a).await,
            Command::Complete(a) => commands::complete(g, a).await,
            Command::Release(a) => commands::release(g, a).await,
            Command::Reset(a) => commands::reset(g, a).await,
            Command::Demo(_) | Command::Worker(_) => unreachable!("handled above"),
        }
    });
    match result {
        Ok(doc) => match doc.print() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(CliError::failure(format!(
                "cannot write the result to stdout: {e}"
            ))),
        },
        Err(e) => fail(e),
    }
}

fn fail(e: CliError) -> ExitCode {
    eprintln!("{e}");
    e.exit_code()
}
