//! Rendering a comparison [`Report`]: a markdown document ([`markdown`]) and SVG charts
//! ([`charts`]).
//!
//! The markdown has one section per durability class, each with one table: a row per system
//! and per case a `Brook/Kafka` row of ratios (throughput, latency percentiles, broker peak
//! memory). Then the cross-check of our rdkafka driver against Kafka's own
//! `ProducerPerformance`, and links to the charts by their file names, so the document
//! belongs in the same directory as the charts.
//!
//! The charts are drawn with `plotters`' SVG backend, which writes text as `<text>` elements:
//! no fonts are needed on the machine that renders them.
//!
//! - `throughput.svg`: MB/s, one group of bars per case, one bar per system.
//! - `latency-<workload>-<durability>.svg`, for each case with latency on some system: the
//!   percentile curves, x on a "nines" scale (`-log10(1 - p/100)`: 90 → 1, 99 → 2,
//!   99.9 → 3, ...), y in milliseconds (log scale when the values span more than 100×).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use plotters::coord::Shift;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::model::{Case, Latency, Report};

/// The file name of the throughput chart.
const THROUGHPUT_SVG: &str = "throughput.svg";

/// Shown in a cell with no value.
const MISSING: &str = "–";

/// The columns of every results table.
const TABLE_HEADER: &str = "| workload | kind | parameters | system | msg/s | MB/s | p50 | p99 | \
                            p99.9 | max | broker CPU (cores) | broker peak RSS (MiB) |";

/// The line under [`TABLE_HEADER`]: text left, numbers right.
const TABLE_RULE: &str = "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|";

/// Chart colours: Brook, Kafka, then any other system.
const BROOK_COLOUR: RGBColor = RGBColor(31, 119, 180);
const KAFKA_COLOUR: RGBColor = RGBColor(255, 127, 14);
const OTHER_COLOURS: [RGBColor; 3] = [
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
];

/// Renders `report` as a markdown document: the run, the machine, a results table per
/// durability class with `Brook/Kafka` ratio rows, the cross-check if any, and links to the
/// charts [`charts`] writes (relative file names).
pub fn markdown(report: &Report) -> String {
    let mut md = String::new();
    let m = &report.machine;
    md.push_str("# Brook vs Kafka\n\n");
    let _ = writeln!(md, "- **Run started:** {}", report.started);
    let _ = writeln!(md, "- **Command:** {}", code_span(&report.command));
    let _ = writeln!(
        md,
        "- **Machine:** {}, {} cores, {:.1} GiB memory, kernel {}, disk {}",
        m.cpu,
        m.cores,
        m.memory_bytes as f64 / GIB,
        m.kernel,
        m.disk
    );
    md.push_str(
        "\nLatencies are in µs below 1 ms, else in ms. Ratios are Brook / Kafka: above 1 means \
         more throughput, but slower latency and more memory.\n",
    );

    for durability in durability_classes(report) {
        let _ = writeln!(md, "\n## Durability: `{durability}`\n");
        if let Some(about) = durability_about(durability) {
            let _ = writeln!(md, "{about}\n");
        }
        md.push_str(TABLE_HEADER);
        md.push('\n');
        md.push_str(TABLE_RULE);
        md.push('\n');
        for case in report.cases.iter().filter(|c| c.durability == durability) {
            let parameters = case.parameters.join(", ");
            for r in &case.results {
                let lat = r.latency_us.as_ref();
                let cells = [
                    cell(&case.workload),
                    cell(&case.kind),
                    cell(&parameters),
                    cell(&system_name(&r.system)),
                    thousands(r.msgs_per_sec),
                    decimal(r.mb_per_sec, 1),
                    micros(lat.map(|l| l.p50)),
                    micros(lat.map(|l| l.p99)),
                    micros(lat.map(|l| l.p999)),
                    micros(lat.map(|l| l.max)),
                    decimal(r.broker_cpu_cores, 2),
                    mebibytes(r.broker_peak_rss_bytes),
                ];
                table_row(&mut md, &cells);
            }
            if let Some(row) = ratio_row(case) {
                table_row(&mut md, &row);
            }
        }
    }

    if let Some(cc) = &report.cross_check {
        md.push_str("\n## Cross-check: our rdkafka driver against Kafka's ProducerPerformance\n\n");
        if !cc.parameters.is_empty() {
            let _ = writeln!(md, "Settings: {}\n", code_span(&cc.parameters.join(", ")));
        }
        md.push_str("| producer | msg/s |\n|---|---:|\n");
        let _ = writeln!(
            md,
            "| rdkafka (brook-bench) | {} |",
            thousands(cc.rdkafka_msgs_per_sec)
        );
        let _ = writeln!(
            md,
            "| ProducerPerformance (Java) | {} |",
            thousands(cc.java_msgs_per_sec)
        );
        let _ = writeln!(
            md,
            "| rdkafka/java | {} |",
            ratio(cc.rdkafka_msgs_per_sec, cc.java_msgs_per_sec)
        );
    }

    md.push_str("\n## Charts\n\n");
    let _ = writeln!(md, "![Throughput, MB/s]({THROUGHPUT_SVG})");
    for case in report.cases.iter().filter(|c| has_latency(c)) {
        let _ = writeln!(
            md,
            "\n![Latency, {} ({})]({})",
            case.workload,
            case.durability,
            latency_chart_name(case)
        );
    }
    md
}

/// Writes the charts of `report` into `dir` (created if missing): `throughput.svg`, and
/// `latency-<workload>-<durability>.svg` for each case with latency on some system. Returns
/// the paths written, throughput first, then in case order.
pub fn charts(report: &Report, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();

    let path = dir.join(THROUGHPUT_SVG);
    throughput_chart(report, &path).with_context(|| format!("drawing {}", path.display()))?;
    written.push(path);

    for case in report.cases.iter().filter(|c| has_latency(c)) {
        let path = dir.join(latency_chart_name(case));
        latency_chart(case, &path).with_context(|| format!("drawing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

// ---------------------------------------------------------------------------------------------
// Markdown helpers.

const GIB: f64 = (1u64 << 30) as f64;
const MIB: f64 = (1u64 << 20) as f64;

/// The durability classes in the order they first appear.
fn durability_classes(report: &Report) -> Vec<&str> {
    let mut classes: Vec<&str> = Vec::new();
    for case in &report.cases {
        if !classes.contains(&case.durability.as_str()) {
            classes.push(&case.durability);
        }
    }
    classes
}

/// What a known durability class means on each system.
fn durability_about(durability: &str) -> Option<&'static str> {
    match durability {
        "no-fsync" => Some("Brook `flush=never`, Kafka's default (no fsync per write)."),
        "fsync-every-write" => {
            Some("Brook `flush=always`, Kafka `flush.messages=1` (fsync on every write).")
        }
        _ => None,
    }
}

/// The `Brook/Kafka` row of a case: msg/s, latency and peak-RSS ratios, `None` unless both
/// systems ran.
fn ratio_row(case: &Case) -> Option<[String; 12]> {
    let brook = case.result("brook")?;
    let kafka = case.result("kafka")?;
    let lat = |f: fn(&Latency) -> u64| match (&brook.latency_us, &kafka.latency_us) {
        (Some(b), Some(k)) => ratio(f(b) as f64, f(k) as f64),
        _ => MISSING.to_owned(),
    };
    let rss = if brook.broker_peak_rss_bytes == 0 || kafka.broker_peak_rss_bytes == 0 {
        MISSING.to_owned()
    } else {
        ratio(
            brook.broker_peak_rss_bytes as f64,
            kafka.broker_peak_rss_bytes as f64,
        )
    };
    Some([
        String::new(),
        String::new(),
        String::new(),
        "Brook/Kafka".to_owned(),
        ratio(brook.msgs_per_sec, kafka.msgs_per_sec),
        String::new(),
        lat(|l| l.p50),
        lat(|l| l.p99),
        lat(|l| l.p999),
        lat(|l| l.max),
        String::new(),
        rss,
    ])
}

fn table_row(md: &mut String, cells: &[String]) {
    md.push('|');
    for c in cells {
        if c.is_empty() {
            md.push_str(" |");
        } else {
            let _ = write!(md, " {c} |");
        }
    }
    md.push('\n');
}

/// Text for a table cell: pipes escaped.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// `text` as an inline code span, with a fence longer than any run of backticks inside.
fn code_span(text: &str) -> String {
    let mut run = 0;
    let mut max_run = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        max_run = max_run.max(run);
    }
    let fence = "`".repeat(max_run + 1);
    if max_run > 0 {
        format!("{fence} {text} {fence}")
    } else {
        format!("{fence}{text}{fence}")
    }
}

/// `Brook` for `brook`, `Kafka` for `kafka`, anything else as it is.
fn system_name(system: &str) -> String {
    match system {
        "brook" => "Brook".to_owned(),
        "kafka" => "Kafka".to_owned(),
        other => other.to_owned(),
    }
}

/// A rate rounded to an integer, with thousands separators: `1,234,567`.
fn thousands(v: f64) -> String {
    if !v.is_finite() {
        return MISSING.to_owned();
    }
    let n = v.round().abs() as u64;
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if v.round() < 0.0 {
        out.push('-');
    }
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

fn decimal(v: f64, places: usize) -> String {
    if v.is_finite() {
        format!("{v:.places$}")
    } else {
        MISSING.to_owned()
    }
}

/// A latency: µs below 1 ms, else ms with two decimals.
fn micros(us: Option<u64>) -> String {
    match us {
        None => MISSING.to_owned(),
        Some(us) if us >= 1000 => format!("{:.2} ms", us as f64 / 1000.0),
        Some(us) => format!("{us} µs"),
    }
}

/// Bytes as MiB, no decimals; 0 means not measured.
fn mebibytes(bytes: u64) -> String {
    if bytes == 0 {
        MISSING.to_owned()
    } else {
        format!("{:.0}", bytes as f64 / MIB)
    }
}

/// `a / b` with two decimals, or [`MISSING`] when it is not a number.
fn ratio(a: f64, b: f64) -> String {
    let r = a / b;
    if b != 0.0 && r.is_finite() {
        format!("{r:.2}")
    } else {
        MISSING.to_owned()
    }
}

// ---------------------------------------------------------------------------------------------
// Charts.

fn has_latency(case: &Case) -> bool {
    case.results.iter().any(|r| r.latency_us.is_some())
}

/// `latency-<workload>-<durability>.svg`, with anything but ASCII letters, digits, `.`, `_`
/// and `-` replaced by `-`.
fn latency_chart_name(case: &Case) -> String {
    format!(
        "latency-{}-{}.svg",
        file_part(&case.workload),
        file_part(&case.durability)
    )
}

fn file_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn colour(system: &str, index: usize) -> RGBColor {
    match system {
        "brook" => BROOK_COLOUR,
        "kafka" => KAFKA_COLOUR,
        _ => OTHER_COLOURS[index % OTHER_COLOURS.len()],
    }
}

/// The systems of a report in the order they first appear.
fn systems(report: &Report) -> Vec<&str> {
    let mut systems: Vec<&str> = Vec::new();
    for r in report.cases.iter().flat_map(|c| &c.results) {
        if !systems.contains(&r.system.as_str()) {
            systems.push(&r.system);
        }
    }
    systems
}

/// Grouped bars: a group per case at x = its index, a bar per system, y = MB/s.
fn throughput_chart(report: &Report, path: &Path) -> anyhow::Result<()> {
    let systems = systems(report);
    let labels: Vec<String> = report
        .cases
        .iter()
        .map(|c| format!("{} ({})", c.workload, c.durability))
        .collect();
    let groups = labels.len().max(1);
    let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0) as u32;
    let group_px = (longest * 7 + 20).max(40 * systems.len() as u32 + 40);
    let width = (120 + groups as u32 * group_px).max(800);

    let top = report
        .cases
        .iter()
        .flat_map(|c| &c.results)
        .map(|r| r.mb_per_sec)
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    let top = if top > 0.0 { top * 1.25 } else { 1.0 };

    let root = SVGBackend::new(path, (width, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let centres: Vec<f64> = (0..labels.len()).map(|i| i as f64).collect();
    let x = Ticked::new(-0.5..groups as f64 - 0.5, centres);
    let mut chart = ChartBuilder::on(&root)
        .caption("Throughput, MB/s", ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x, 0.0..top)?;
    let label_of = |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 {
            labels.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&label_of)
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
        .y_desc("MB/s")
        .y_label_formatter(&|v| axis_number(*v))
        .draw()?;

    let bar = 0.8 / systems.len().max(1) as f64;
    for (j, system) in systems.iter().enumerate() {
        let c = colour(system, j);
        let bars: Vec<(f64, f64)> = report
            .cases
            .iter()
            .enumerate()
            .filter_map(|(i, case)| {
                let r = case.result(system)?;
                r.mb_per_sec
                    .is_finite()
                    .then_some((i as f64 - 0.4 + j as f64 * bar, r.mb_per_sec))
            })
            .collect();
        chart
            .draw_series(
                bars.iter()
                    .map(|&(x0, y)| Rectangle::new([(x0, 0.0), (x0 + bar * 0.95, y)], c.filled())),
            )?
            .label(system_name(system))
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], c.filled()));
        let value_style = TextStyle::from(("sans-serif", 12).into_font())
            .pos(Pos::new(HPos::Center, VPos::Bottom));
        chart.draw_series(bars.iter().map(|&(x0, y)| {
            Text::new(
                format!("{y:.1}"),
                (x0 + bar * 0.475, y),
                value_style.clone(),
            )
        }))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// A linear f64 axis with ticks (and mesh lines) at the given values only, labelled by the
/// chart's formatter.
struct Ticked {
    inner: RangedCoordf64,
    ticks: Vec<f64>,
}

impl Ticked {
    fn new(range: std::ops::Range<f64>, ticks: Vec<f64>) -> Self {
        Ticked {
            inner: range.into(),
            ticks,
        }
    }
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.inner.range()
    }
}

/// One system's curve: `(nines, ms)` points, as drawn.
struct Curve {
    name: String,
    colour: RGBColor,
    points: Vec<(f64, f64)>,
}

/// The x of a percentile on the nines scale: `-log10(1 - p/100)`; infinite at 100.
fn nines(p: f64) -> f64 {
    -(1.0 - p.clamp(0.0, 100.0) / 100.0).log10()
}

/// The curve to draw for one system: its percentile curve, or its four percentiles when the
/// curve is empty. `(percentile, µs)`.
fn curve_points(l: &Latency) -> Vec<(f64, u64)> {
    if l.curve.is_empty() {
        vec![(50.0, l.p50), (99.0, l.p99), (99.9, l.p999), (100.0, l.max)]
    } else {
        l.curve.clone()
    }
}

/// Percentile curves of one case, one line per system with latency.
fn latency_chart(case: &Case, path: &Path) -> anyhow::Result<()> {
    let with_latency: Vec<_> = case
        .results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| Some((i, r, curve_points(r.latency_us.as_ref()?))))
        .collect();

    // The x range: at least to 99.99, to the whole nines past the last point below 100, then
    // half a unit more for the maximum (p = 100) if a curve has it.
    let finite_top = with_latency
        .iter()
        .flat_map(|(_, _, pts)| pts.iter())
        .filter(|(p, _)| *p < 100.0)
        .map(|(p, _)| nines(*p))
        .fold(0.0_f64, f64::max);
    let nines_end = finite_top.ceil().max(4.0);
    let has_max = with_latency
        .iter()
        .flat_map(|(_, _, pts)| pts.iter())
        .any(|(p, _)| *p >= 100.0);
    let x_end = if has_max { nines_end + 0.5 } else { nines_end };
    let mut ticks: Vec<(f64, String)> = vec![(0.0, "0".to_owned()), (nines(50.0), "50".to_owned())];
    let mut k = 1;
    while k as f64 <= nines_end + 1e-9 {
        ticks.push((k as f64, nines_label(k)));
        k += 1;
    }
    if has_max {
        ticks.push((x_end, "max".to_owned()));
    }

    let curves: Vec<Curve> = with_latency
        .iter()
        .map(|(i, r, pts)| Curve {
            name: system_name(&r.system),
            colour: colour(&r.system, *i),
            points: pts
                .iter()
                .map(|&(p, us)| {
                    let x = if p >= 100.0 {
                        x_end
                    } else {
                        nines(p).min(x_end)
                    };
                    (x, us as f64 / 1000.0)
                })
                .collect(),
        })
        .collect();

    let values = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|&(_, ms)| ms));
    let max_ms = values.clone().fold(0.0_f64, f64::max);
    let min_ms = values.filter(|&ms| ms > 0.0).fold(f64::INFINITY, f64::min);
    let title = format!(
        "{} ({}): {} latency",
        case.workload, case.durability, case.kind
    );

    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let x = Ticked::new(0.0..x_end, ticks.iter().map(|(x, _)| *x).collect());
    let x_label = |v: &f64| {
        ticks
            .iter()
            .find(|(t, _)| (t - v).abs() < 1e-9)
            .map(|(_, l)| l.clone())
            .unwrap_or_default()
    };
    if min_ms.is_finite() && max_ms / min_ms > 100.0 {
        // Log scale: nothing may be 0, so floor at half the smallest positive value.
        let floor = min_ms / 2.0;
        let curves: Vec<Curve> = curves
            .into_iter()
            .map(|c| Curve {
                points: c
                    .points
                    .into_iter()
                    .map(|(x, ms)| (x, ms.max(floor)))
                    .collect(),
                ..c
            })
            .collect();
        let y: LogCoord<f64> = (floor..max_ms * 2.0).log_scale().into();
        draw_curves(&root, &title, x, y, &x_label, &curves)?;
    } else {
        let top = if max_ms > 0.0 { max_ms * 1.15 } else { 1.0 };
        let y: RangedCoordf64 = (0.0..top).into();
        draw_curves(&root, &title, x, y, &x_label, &curves)?;
    }
    root.present()?;
    Ok(())
}

/// `90`, `99`, `99.9`, ... for 1, 2, 3, ... nines.
fn nines_label(k: usize) -> String {
    match k {
        0 => "0".to_owned(),
        1 => "90".to_owned(),
        2 => "99".to_owned(),
        _ => format!("99.{}", "9".repeat(k - 2)),
    }
}

/// The latency chart proper, over a linear or a logarithmic y axis.
fn draw_curves<X, Y>(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    title: &str,
    x: X,
    y: Y,
    x_label: &dyn Fn(&f64) -> String,
    curves: &[Curve],
) -> anyhow::Result<()>
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(x, y)?;
    chart
        .configure_mesh()
        .x_label_formatter(x_label)
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
        .y_label_formatter(&|v| axis_number(*v))
        .x_desc("percentile")
        .y_desc("latency, ms")
        .draw()?;
    for c in curves {
        let style = c.colour.stroke_width(2);
        chart
            .draw_series(LineSeries::new(c.points.iter().copied(), style))?
            .label(c.name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// An axis value with as many decimals as its size needs, trailing zeros trimmed.
fn axis_number(v: f64) -> String {
    let a = v.abs();
    let s = if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else if a >= 0.01 {
        format!("{v:.3}")
    } else {
        format!("{v:.4}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::super::model::{CrossCheck, Machine, SystemResult};
    use super::*;

    fn result(system: &str, msgs: f64, latency: Option<Latency>, rss_mib: u64) -> SystemResult {
        SystemResult {
            system: system.to_owned(),
            msgs_per_sec: msgs,
            mb_per_sec: msgs * 1024.0 / 1e6,
            latency_us: latency,
            broker_cpu_cores: 1.5,
            broker_peak_rss_bytes: rss_mib << 20,
            messages: msgs as u64 * 10,
            seconds: 10.0,
            runs_msgs_per_sec: vec![msgs],
        }
    }

    fn latency(scale: u64) -> Latency {
        Latency {
            p50: 500 * scale,
            p99: 2_000 * scale,
            p999: 8_000 * scale,
            max: 40_000 * scale,
            curve: vec![
                (0.0, 100 * scale),
                (50.0, 500 * scale),
                (90.0, 900 * scale),
                (99.0, 2_000 * scale),
                (99.9, 8_000 * scale),
                (99.99, 20_000 * scale),
                (100.0, 40_000 * scale),
            ],
        }
    }

    fn report() -> Report {
        Report {
            started: "2025-11-26T08:00:00Z".to_owned(),
            command: "brook-bench compare --out results".to_owned(),
            machine: Machine {
                cpu: "AMD EPYC 7B13".to_owned(),
                cores: 2,
                memory_bytes: 8 << 30,
                kernel: "6.8.0".to_owned(),
                disk: "ext4 on /dev/vda1".to_owned(),
            },
            cases: vec![
                Case {
                    workload: "produce-1k-max".to_owned(),
                    kind: "produce".to_owned(),
                    durability: "no-fsync".to_owned(),
                    parameters: vec!["size=1024".to_owned(), "partitions=6".to_owned()],
                    results: vec![
                        result("brook", 200_000.0, Some(latency(1)), 256),
                        result("kafka", 100_000.0, Some(latency(2)), 1024),
                    ],
                },
                Case {
                    workload: "consume-1k".to_owned(),
                    kind: "consume".to_owned(),
                    durability: "fsync-every-write".to_owned(),
                    parameters: vec!["size=1024".to_owned()],
                    results: vec![
                        result("brook", 300_000.0, None, 300),
                        result("kafka", 400_000.0, None, 0),
                    ],
                },
            ],
            cross_check: Some(CrossCheck {
                parameters: vec!["acks=all".to_owned()],
                rdkafka_msgs_per_sec: 95_000.0,
                java_msgs_per_sec: 100_000.0,
            }),
        }
    }

    #[test]
    fn markdown_tables_and_ratios() {
        let md = markdown(&report());
        let lines: Vec<&str> = md.lines().collect();
        let header = "| workload | kind | parameters | system | msg/s | MB/s | p50 | p99 | p99.9 \
                      | max | broker CPU (cores) | broker peak RSS (MiB) |";
        assert_eq!(lines.iter().filter(|l| **l == header).count(), 2, "{md}");
        assert!(lines.contains(&"## Durability: `no-fsync`"), "{md}");
        assert!(
            lines.contains(&"## Durability: `fsync-every-write`"),
            "{md}"
        );
        assert!(
            lines.contains(&"- **Machine:** AMD EPYC 7B13, 2 cores, 8.0 GiB memory, kernel 6.8.0, disk ext4 on /dev/vda1"),
            "{md}"
        );
        assert!(
            lines.contains(
                &"| produce-1k-max | produce | size=1024, partitions=6 | Brook | 200,000 | 204.8 \
                  | 500 µs | 2.00 ms | 8.00 ms | 40.00 ms | 1.50 | 256 |"
            ),
            "{md}"
        );
        // Brook 200,000 msg/s against Kafka's 100,000, latencies half, memory a quarter.
        assert!(
            lines.contains(&"| | | | Brook/Kafka | 2.00 | | 0.50 | 0.50 | 0.50 | 0.50 | | 0.25 |"),
            "{md}"
        );
        // No latency on either side, and Kafka's RSS not measured.
        assert!(
            lines.contains(&"| | | | Brook/Kafka | 0.75 | | – | – | – | – | | – |"),
            "{md}"
        );
        assert!(lines.contains(&"| rdkafka/java | 0.95 |"), "{md}");
        assert!(
            lines.contains(&"| rdkafka (brook-bench) | 95,000 |"),
            "{md}"
        );
        assert!(
            lines.contains(&"![Throughput, MB/s](throughput.svg)"),
            "{md}"
        );
        assert!(
            lines.contains(
                &"![Latency, produce-1k-max (no-fsync)](latency-produce-1k-max-no-fsync.svg)"
            ),
            "{md}"
        );
        assert!(!md.contains("latency-consume-1k"), "{md}");
    }

    #[test]
    fn charts_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("charts");
        let written = charts(&report(), &out).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["throughput.svg", "latency-produce-1k-max-no-fsync.svg"]
        );
        for path in &written {
            assert_eq!(path.parent(), Some(out.as_path()));
            let svg = std::fs::read_to_string(path).unwrap();
            assert!(svg.starts_with("<svg"), "{}", path.display());
            assert!(
                svg.contains(">\nBrook\n<") || svg.contains(">Brook<"),
                "{svg}"
            );
            assert!(
                svg.contains(">\nKafka\n<") || svg.contains(">Kafka<"),
                "{svg}"
            );
        }
        let throughput = std::fs::read_to_string(&written[0]).unwrap();
        assert!(throughput.contains("produce-1k-max (no-fsync)"));
        assert!(throughput.contains("consume-1k (fsync-every-write)"));
        let latency = std::fs::read_to_string(&written[1]).unwrap();
        for tick in ["50", "90", "99", "99.9", "99.99", "max"] {
            assert!(
                latency.contains(&format!(">\n{tick}\n<")),
                "{tick}: {latency}"
            );
        }
    }

    #[test]
    fn charts_of_an_empty_report() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = report();
        r.cases.clear();
        let written = charts(&r, dir.path()).unwrap();
        assert_eq!(written, [dir.path().join("throughput.svg")]);
    }

    #[test]
    fn formats() {
        assert_eq!(thousands(1_234_567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(micros(Some(999)), "999 µs");
        assert_eq!(micros(Some(1000)), "1.00 ms");
        assert_eq!(micros(Some(12_345)), "12.35 ms");
        assert_eq!(micros(None), "–");
        assert_eq!(ratio(1.0, 0.0), "–");
        assert_eq!(ratio(1.0, 3.0), "0.33");
        assert_eq!(code_span("a `b` c"), "`` a `b` c ``");
        assert_eq!(cell("a|b"), "a\\|b");
        assert_eq!(nines_label(1), "90");
        assert_eq!(nines_label(2), "99");
        assert_eq!(nines_label(4), "99.99");
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
        assert_eq!(axis_number(0.5), "0.5");
        assert_eq!(axis_number(20.0), "20");
        let mut case = report().cases.remove(0);
        case.workload = "a b/c".to_owned();
        assert_eq!(latency_chart_name(&case), "latency-a-b-c-no-fsync.svg");
    }
}
