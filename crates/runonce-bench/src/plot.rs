//! The SVG plot: throughput against concurrency.

use plotters::prelude::*;

use crate::{Report, Workload};

/// One plotted series: a name, a colour, and (concurrency, ops/s) points.
struct Series {
    name: String,
    color: RGBColor,
    points: Vec<(f64, f64)>,
    /// A reference level: also drawn as a dashed line across the plot.
    reference: bool,
}

const COLORS: [RGBColor; 8] = [
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x17, 0xbe, 0xcf),
];

/// Whether a workload belongs to a series.
type Pick = fn(Workload) -> bool;

fn series(report: &Report) -> Vec<Series> {
    let groups: [(&str, Pick); 8] = [
        ("runonce trigger, fresh keys", |w| {
            matches!(w, Workload::Trigger { .. })
        }),
        ("runonce trigger, 50% duplicates", |w| {
            matches!(w, Workload::TriggerDup { .. })
        }),
        ("runonce batch_trigger(1000), items/s", |w| {
            matches!(w, Workload::Batch { .. })
        }),
        ("redis-rs SET NX PX", |w| {
            matches!(w, Workload::RawSet { .. })
        }),
        ("redis-benchmark EVALSHA -P 1", |w| {
            matches!(w, Workload::RedisBenchmark { pipeline: 1 })
        }),
        ("redis-benchmark EVALSHA -P 16", |w| {
            matches!(w, Workload::RedisBenchmark { pipeline: 16 })
        }),
        (
            "redis-benchmark EVALSHA claim.lua, 25 keys/call, keys/s",
            |w| matches!(w, Workload::RedisBenchmarkClaimLua { .. }),
        ),
        ("idempotent 0.3 try_insert", |w| {
            matches!(w, Workload::Idempotent { .. })
        }),
    ];
    groups
        .iter()
        .enumerate()
        .filter_map(|(i, (name, pick))| {
            let mut points: Vec<(f64, f64)> = report
                .rows
                .iter()
                .filter(|r| r.ops_per_sec > 0.0 && pick(r.id))
                .map(|r| (r.concurrency as f64, r.ops_per_sec))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let reference = name.starts_with("redis-benchmark EVALSHA -P");
            (!points.is_empty()).then(|| Series {
                name: if reference {
                    format!("{name} (c=50; dashed: its level)")
                } else {
                    (*name).to_owned()
                },
                color: COLORS[i % COLORS.len()],
                points,
                reference,
            })
        })
        .collect()
}

const X_MIN: f64 = 0.8;
const X_MAX: f64 = 320.0;

/// Renders the plot; errors from plotters become an SVG comment.
pub(crate) fn svg(report: &Report) -> String {
    let mut out = String::new();
    if let Err(e) = draw(report, &mut out) {
        return format!("<!-- plot failed: {e} -->\n");
    }
    out
}

fn draw<'a>(report: &Report, out: &'a mut String) -> Result<(), Box<dyn std::error::Error + 'a>> {
    let all = series(report);
    let y_max = all
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(1.0f64, f64::max)
        * 1.15;
    let root = SVGBackend::with_string(out, (960, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let caption = format!(
        "runonce vs baselines: throughput against concurrency ({}, median of {})",
        report.cores_label(),
        report.reps
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 18))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(84)
        .build_cartesian_2d((X_MIN..X_MAX).log_scale(), 0f64..y_max)?;
    chart
        .configure_mesh()
        .light_line_style(RGBColor(238, 238, 238))
        .x_desc("concurrent callers (log scale)")
        .y_desc("ops/s")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{:.0}k", y / 1000.0))
        .draw()?;
    for s in &all {
        let color = s.color;
        let style = ShapeStyle::from(&color).stroke_width(2);
        if s.reference {
            let y = s.points[0].1;
            chart.draw_series(DashedLineSeries::new(
                [(X_MIN, y), (X_MAX, y)],
                8,
                6,
                ShapeStyle::from(&color).stroke_width(1),
            ))?;
        }
        chart
            .draw_series(LineSeries::new(s.points.clone(), style))?
            .label(s.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(
            s.points
                .iter()
                .map(|&p| Circle::new(p, 4, ShapeStyle::from(&color).filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
