//! A quick run of the whole benchmark: every workload reports positive
//! figures. No timing assertions: the figures depend on the machine.

use runonce_bench::{run, BenchConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_run_reports_every_workload() {
    let cfg = BenchConfig {
        quick: true,
        reps: 1,
        ..Default::default()
    };
    let steps = std::sync::Mutex::new(Vec::new());
    let report = run(&cfg, &|label, done, total| {
        steps.lock().unwrap().push((label.to_owned(), done, total));
    })
    .await
    .expect("the quick benchmark runs");

    for w in cfg.workloads() {
        let row = report
            .rows
            .iter()
            .find(|r| r.id == w)
            .unwrap_or_else(|| panic!("no row for {w:?}"));
        assert!(row.ops_per_sec > 0.0, "{row:?}");
        assert!(row.p50_us > 0.0 && row.p99_us >= row.p50_us, "{row:?}");
    }
    assert_eq!(report.rows.len(), cfg.workloads().len());
    let m = &report.memory;
    assert!(m.bare_set_bytes_per_record > 0.0, "{m:?}");
    assert!(m.runonce_bytes_per_record > 0.0, "{m:?}");
    assert!(m.runonce_payload_bytes_per_record > 0.0, "{m:?}");
    assert!(!report.targets.is_empty());

    let steps = steps.into_inner().unwrap();
    let (_, done, total) = steps.last().expect("progress was reported");
    assert_eq!(done, total, "the last progress call is the end");

    assert!(report.table().contains("runonce trigger, fresh keys"));
    let json: serde_json::Value = serde_json::from_str(&report.json()).unwrap();
    assert!(json["rows"].as_array().is_some_and(|r| !r.is_empty()));
    let svg = report.svg();
    assert!(svg.starts_with("<svg") && svg.contains("</svg>"), "{svg}");
}
