//! The `runonce-bench` command line, shared by its own binary and by
//! `runonce bench`.
//!
//! ```text
//! runonce-bench [--json] [--quick] [--reps N] [--svg PATH] [--no-cluster]
//!               [--no-idempotent] [--seconds S] [--records N] [--client-threads N]
//!               [--only TEXT] [--from-json PATH]
//! ```

use std::process::ExitCode;

use crate::{run_blocking, BenchConfig, Report};
use indicatif::{ProgressBar, ProgressStyle};

/// The usage text of the command.
pub const USAGE: &str =
    "usage: runonce-bench [--json] [--quick] [--reps N] [--svg PATH] [--no-cluster] \
[--no-idempotent] [--seconds S] [--records N] [--client-threads N] [--only TEXT]
                     [--from-json PATH]

Runs the runonce benchmark against a private redis-server on loopback and prints
a table (or, with --json, the same figures as JSON).

  --json               print JSON instead of the table
  --quick              small sizes and short phases (a few seconds; not for publishing)
  --reps N             repetitions per figure; each figure is their median (default 3)
  --svg PATH           also write the throughput-against-concurrency plot to PATH
  --no-cluster         skip the 1- vs 3-primary Redis Cluster workloads
  --no-idempotent      skip the idempotent crate baseline (feature `idempotent`)
  --seconds S          seconds per timed phase (default 1, 0.1 with --quick)
  --records N          records per memory measurement (default 200000)
  --client-threads N   client tokio worker threads, 0 = current-thread (default 0)
  --only TEXT          only the workloads whose label contains TEXT (`memory` for the
                       memory figures), e.g. to profile one
  --from-json PATH     run nothing: re-render the table (or --svg) of a saved --json report";

/// Parsed command-line options.
#[derive(Debug, Default)]
pub struct Args {
    /// What to measure.
    pub cfg: BenchConfig,
    /// Print JSON instead of the table.
    pub json: bool,
    /// Also write the plot there.
    pub svg: Option<String>,
    /// Re-render a saved JSON report instead of measuring.
    pub from_json: Option<String>,
}

/// Parses the flags of [`USAGE`]; `Err("")` for `--help`.
pub fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut out = Args {
        cfg: BenchConfig::default(),
        json: false,
        svg: None,
        from_json: None,
    };
    fn value<T: std::str::FromStr>(
        flag: &str,
        args: &mut impl Iterator<Item = String>,
    ) -> Result<T, String> {
        let v = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        v.parse().map_err(|_| format!("{flag}: cannot parse {v:?}"))
    }
    while let Some(a) = args.next() {
        match a.as_str() {
            "--json" => out.json = true,
            "--quick" => out.cfg.quick = true,
            "--no-cluster" => out.cfg.cluster = false,
            "--no-idempotent" => out.cfg.idempotent = false,
            "--reps" => out.cfg.reps = value::<usize>(&a, &mut args)?.max(1),
            "--svg" => out.svg = Some(value(&a, &mut args)?),
            "--seconds" => out.cfg.seconds = Some(value(&a, &mut args)?),
            "--records" => out.cfg.memory_records = Some(value(&a, &mut args)?),
            "--client-threads" => out.cfg.client_threads = value(&a, &mut args)?,
            "--only" => out.cfg.only = Some(value(&a, &mut args)?),
            "--from-json" => out.from_json = Some(value(&a, &mut args)?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(out)
}

/// The whole command: parse `args`, measure (or re-render), print.
pub fn main(args: impl Iterator<Item = String>) -> ExitCode {
    let args = match parse(args) {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("runonce-bench: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    execute(&args)
}

/// Measures (or re-renders `from_json`), writes the plot, prints the table
/// or JSON.
pub fn execute(args: &Args) -> ExitCode {
    let result = match &args.from_json {
        Some(path) => std::fs::read_to_string(path)
            .map_err(anyhow::Error::from)
            .and_then(|text| Report::from_json(&text)),
        None => measure(&args.cfg),
    };
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("runonce-bench: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = &args.svg {
        if let Err(e) = std::fs::write(path, report.svg()) {
            eprintln!("runonce-bench: cannot write {path}: {e}");
            return ExitCode::FAILURE;
        }
    }
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.table());
        if let Some(path) = &args.svg {
            println!("plot written to {path}");
        }
    }
    ExitCode::SUCCESS
}

/// Runs the benchmark with a progress bar on stderr.
fn measure(cfg: &BenchConfig) -> anyhow::Result<Report> {
    let bar = ProgressBar::new(1);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:32}] {pos}/{len} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let result = run_blocking(cfg, &mut |label, done, total| {
        bar.set_length(total);
        bar.set_position(done);
        bar.set_message(label.to_owned());
    });
    bar.finish_and_clear();
    result
}
