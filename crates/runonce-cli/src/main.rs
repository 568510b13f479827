//! `runonce`: a thin command line over the runonce library.
//!
//! One-shot commands (`trigger`, `batch`, `lookup`, `complete`, `release`,
//! `reset`) print one JSON document on stdout and exit with
//! 0 (success), 1 (backend unavailable or other failure), 2 (invalid input;
//! nothing was written) or 3 (payload mismatch). Error messages go to stderr,
//! prefixed `error: `. `inspect` is `lookup` for humans; `stats` counts the
//! records under the prefix (tables, or JSON with `--json`) and judges the
//! server's settings; `demo` shows many worker processes deduplicating
//! through one Redis; `bench` measures it against Redis's own ceilings.
//!
//! Redis is one server (`--redis`), a cluster (`--cluster`) or a
//! Sentinel-managed primary (`--sentinel` + `--master`); see
//! [`cli::Global::resolve`] for how flags and environment combine.

mod cli;
mod commands;
mod demo;
mod error;
mod output;
mod stats;
mod worker;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use crate::cli::{Cli, Command};
use crate::error::CliError;

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let mut cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if let Err(e) = cli.global.resolve(&matches) {
        return fail(e);
    }
    let g = &cli.global;
    match &cli.command {
        Command::Demo(a) => return demo::run(g, a),
        Command::Worker(a) => return worker::run_process(g, a),
        Command::Bench(a) => {
            let mut args = runonce_bench::cli::Args {
                json: a.json,
                svg: a.svg.clone(),
                ..Default::default()
            };
            args.cfg.quick = a.quick;
            args.cfg.reps = a.reps as usize;
            args.cfg.cluster = !a.no_cluster;
            args.cfg.only = a.only.clone();
            return runonce_bench::cli::execute(&args);
        }
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
            Command::Inspect(a) => commands::inspect(g, a).await,
            Command::Stats(a) => stats::stats(g, a).await,
            Command::Demo(_) | Command::Worker(_) | Command::Bench(_) => {
                unreachable!("handled above")
            }
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
