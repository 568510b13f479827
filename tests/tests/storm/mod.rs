//! Multi-process trigger storms: spawns `runonce-storm` workers, collects
//! their answers while they run, and checks that every key got exactly one
//! run that every process agrees on.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The worker binary, built by Cargo alongside these tests.
pub const STORM_BIN: &str = env!("CARGO_BIN_EXE_runonce-storm");

/// One answer printed by a worker: `<key index> <run id> <cached 0|1> <replicas|->`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// Which worker printed it.
    pub process: usize,
    pub key: usize,
    pub run_id: String,
    pub cached: bool,
    pub replicas: Option<u32>,
}

fn parse_answer(process: usize, line: &str) -> Answer {
    let f: Vec<&str> = line.split(' ').collect();
    assert_eq!(
        f.len(),
        4,
        "worker {process} printed a malformed line {line:?}"
    );
    Answer {
        process,
        key: f[0].parse().expect("key index"),
        run_id: f[1].to_owned(),
        cached: match f[2] {
            "0" => false,
            "1" => true,
            other => panic!("worker {process}: bad cached flag {other:?} in {line:?}"),
        },
        replicas: (f[3] != "-").then(|| f[3].parse().expect("replica count")),
    }
}

struct Worker {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
}

fn collect(
    stream: impl std::io::Read + Send + 'static,
) -> (Arc<Mutex<Vec<String>>>, JoinHandle<()>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let handle = std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    });
    (lines, handle)
}

/// A running storm of worker processes. Dropping it kills the workers.
pub struct Storm {
    workers: Vec<Worker>,
    started: Instant,
}

impl Storm {
    /// Starts `processes` workers; worker `i` gets `common` plus `--seed i`.
    pub fn start(processes: usize, common: &[String]) -> Storm {
        Storm::start_with(processes, common, |_| Vec::new())
    }

    /// Like [`Storm::start`], worker `i` also getting `extra(i)`.
    pub fn start_with(
        processes: usize,
        common: &[String],
        extra: impl Fn(usize) -> Vec<String>,
    ) -> Storm {
        let workers = (0..processes)
            .map(|i| {
                let mut child = Command::new(STORM_BIN)
                    .args(common)
                    .args(extra(i))
                    .arg("--seed")
                    .arg(i.to_string())
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap_or_else(|e| panic!("cannot spawn {STORM_BIN}: {e}"));
                let (stdout, out_reader) = collect(child.stdout.take().expect("piped stdout"));
                let (stderr, err_reader) = collect(child.stderr.take().expect("piped stderr"));
                Worker {
                    child,
                    stdout,
                    stderr,
                    readers: vec![out_reader, err_reader],
                }
            })
            .collect();
        Storm {
            workers,
            started: Instant::now(),
        }
    }

    /// Answers printed so far, over all workers.
    pub fn answered(&self) -> usize {
        self.workers
            .iter()
            .map(|w| w.stdout.lock().unwrap().len())
            .sum()
    }

    /// Blocks until the workers printed at least `n` answers in total.
    ///
    /// # Panics
    ///
    /// If that takes longer than `within`, or every worker exited first.
    pub fn wait_answered(&mut self, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let got = self.answered();
            if got >= n {
                return;
            }
            let all_exited = self
                .workers
                .iter_mut()
                .all(|w| w.child.try_wait().ok().flatten().is_some());
            if all_exited && self.answered() < n {
                panic!(
                    "the workers exited after {} answers, before {n}\n{}",
                    self.answered(),
                    self.stderr_tail()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "only {got} of {n} answers after {within:?}\n{}",
                    self.stderr_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether every worker has exited.
    pub fn finished(&mut self) -> bool {
        self.workers
            .iter_mut()
            .all(|w| w.child.try_wait().ok().flatten().is_some())
    }

    /// Waits for every worker to exit (killing them all after `within`, which fails the
    /// test) and parses what they printed.
    pub fn finish(mut self, within: Duration) -> Outcome {
        let deadline = Instant::now() + within;
        for (i, w) in self.workers.iter_mut().enumerate() {
            loop {
                match w.child.try_wait().expect("waiting for a worker") {
                    Some(status) => {
                        assert!(status.success(), "worker {i} exited with {status}");
                        break;
                    }
                    None if Instant::now() >= deadline => {
                        let _ = w.child.kill();
                        let _ = w.child.wait();
                        panic!(
                            "worker {i} still running after {within:?}\n{}",
                            w.stderr.lock().unwrap().join("\n")
                        );
                    }
                    None => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }
        let elapsed = self.started.elapsed();
        let mut outcome = Outcome {
            answers: Vec::new(),
            errors: Vec::new(),
            gave_up: Vec::new(),
            other: Vec::new(),
            elapsed,
        };
        for (i, w) in self.workers.iter_mut().enumerate() {
            for r in w.readers.drain(..) {
                r.join().expect("reader thread");
            }
            for line in w.stdout.lock().unwrap().iter() {
                outcome.answers.push(parse_answer(i, line));
            }
            for line in w.stderr.lock().unwrap().iter() {
                if let Some(rest) = line.strip_prefix("error ") {
                    outcome.errors.push(format!("worker {i}: {rest}"));
                } else if let Some(rest) = line.strip_prefix("gave-up ") {
                    outcome.gave_up.push(format!("worker {i}: {rest}"));
                } else if !line.starts_with("done ") {
                    outcome.other.push(format!("worker {i}: {line}"));
                }
            }
        }
        outcome
    }

    fn stderr_tail(&self) -> String {
        let mut out = String::new();
        for (i, w) in self.workers.iter().enumerate() {
            let lines = w.stderr.lock().unwrap();
            for l in &lines[lines.len().saturating_sub(5)..] {
                out.push_str(&format!("worker {i}: {l}\n"));
            }
        }
        out
    }
}

impl Drop for Storm {
    fn drop(&mut self) {
        for w in &mut self.workers {
            let _ = w.child.kill();
            let _ = w.child.wait();
        }
    }
}

/// Everything the workers printed.
#[derive(Debug)]
pub struct Outcome {
    pub answers: Vec<Answer>,
    /// Failed attempts (`error <key> <attempt> <message>`), prefixed by the worker.
    pub errors: Vec<String>,
    /// Calls abandoned at the deadline.
    pub gave_up: Vec<String>,
    /// Any other stderr line (connection retries, panics).
    pub other: Vec<String>,
    pub elapsed: Duration,
}

/// Per-key verdict of a storm.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Keys whose answers name more than one run ID.
    pub disagreements: Vec<String>,
    /// Keys with more than one run created (a `cached: false` answer with another run
    /// ID, or from a second process).
    pub duplicates: Vec<String>,
    /// Keys without a `cached: false` answer although every call answered.
    pub unowned: Vec<usize>,
    /// The agreed run ID of every key that has one.
    pub owners: BTreeMap<usize, String>,
}

impl Outcome {
    /// Judges every key in `0..keys`: all answers must name one run ID, and the
    /// `cached: false` answers (the creating call, plus re-entrant retries of it) must
    /// all come from one process with that ID.
    pub fn verdict(&self, keys: usize) -> Verdict {
        let mut by_key: BTreeMap<usize, Vec<&Answer>> = BTreeMap::new();
        for a in &self.answers {
            assert!(a.key < keys, "answer for key {} outside 0..{keys}", a.key);
            by_key.entry(a.key).or_default().push(a);
        }
        let mut v = Verdict::default();
        for (key, answers) in by_key {
            let ids: BTreeSet<&str> = answers.iter().map(|a| a.run_id.as_str()).collect();
            let creators: BTreeSet<(usize, &str)> = answers
                .iter()
                .filter(|a| !a.cached)
                .map(|a| (a.process, a.run_id.as_str()))
                .collect();
            if ids.len() > 1 {
                v.disagreements.push(format!(
                    "key {key}: run IDs {ids:?}, created by {creators:?}"
                ));
            }
            if creators.len() > 1 {
                v.duplicates
                    .push(format!("key {key}: created by {creators:?}"));
            }
            if creators.is_empty() {
                v.unowned.push(key);
            }
            if ids.len() == 1 {
                v.owners
                    .insert(key, ids.into_iter().next().expect("one id").to_owned());
            }
        }
        v
    }

    /// Asserts the storm's core promise: every one of `processes` answered every key
    /// `repeat` times, no answer was an error unless `errors_allowed`, and every key has
    /// exactly one run, which every answer names. Returns the agreed owners.
    pub fn assert_exactly_once(
        &self,
        keys: usize,
        processes: usize,
        repeat: usize,
        errors_allowed: bool,
    ) -> BTreeMap<usize, String> {
        assert!(
            self.other.iter().all(|l| !l.contains("panicked")),
            "a worker panicked: {:?}",
            self.other
        );
        assert!(
            self.gave_up.is_empty(),
            "{} calls were abandoned, e.g. {:?}",
            self.gave_up.len(),
            &self.gave_up[..self.gave_up.len().min(5)]
        );
        if !errors_allowed {
            assert!(
                self.errors.is_empty(),
                "{} errors reached the callers, e.g. {:?}",
                self.errors.len(),
                &self.errors[..self.errors.len().min(10)]
            );
        }
        assert_eq!(
            self.answers.len(),
            keys * processes * repeat,
            "every process answers every key {repeat} time(s)"
        );
        let v = self.verdict(keys);
        assert!(
            v.duplicates.is_empty(),
            "{} keys ran more than once, e.g. {:?}",
            v.duplicates.len(),
            &v.duplicates[..v.duplicates.len().min(10)]
        );
        assert!(
            v.disagreements.is_empty(),
            "{} keys where processes disagree, e.g. {:?}",
            v.disagreements.len(),
            &v.disagreements[..v.disagreements.len().min(10)]
        );
        assert!(v.unowned.is_empty(), "keys nobody created: {:?}", v.unowned);
        assert_eq!(v.owners.len(), keys, "every key has an owner");
        v.owners
    }

    /// Number of `cached: false` answers.
    pub fn created(&self) -> usize {
        self.answers.iter().filter(|a| !a.cached).count()
    }
}

/// Worker flags from string slices.
pub fn flags(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| (*s).to_owned()).collect()
}

/// Asserts that Redis, read through `d`, holds for every key `k<i>` of
/// `task` exactly the run the processes agreed on (`owners`): a trigger of
/// each answers `cached` with that run.
pub async fn assert_stored_owners(
    d: &runonce::Dedupe,
    task: &str,
    owners: &std::collections::BTreeMap<usize, String>,
) {
    let keys = owners.len();
    let again = d
        .batch_trigger(
            task,
            (0..keys)
                .map(|i| runonce::TriggerOptions::with_key(format!("k{i}")))
                .collect(),
        )
        .await
        .unwrap();
    for (i, r) in again.iter().enumerate() {
        let r = r.as_ref().unwrap();
        assert!(
            r.cached && r.run_id == owners[&i],
            "key {i}: stored {r:?}, agreed {}",
            owners[&i]
        );
    }
}
