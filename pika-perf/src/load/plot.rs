//! `--plot FILE.svg`: the run over time as an SVG picture, written by
//! hand (a few hundred bytes of markup per line; no plotting crate).
//!
//! Two charts share the time axis: messages per second (sent, received,
//! and confirmed when producers use confirms) and consumer latency (p50
//! and p99 of each interval, µs). Each has axes with round-number ticks,
//! labels and a legend. Intervals without deliveries leave a gap in the
//! latency lines.

use std::fmt::Write as _;
use std::path::Path;

use super::output::IntervalSample;
use crate::Result;

/// Width of the picture, pixels.
const WIDTH: f64 = 960.0;
/// Height of the picture, pixels.
const HEIGHT: f64 = 640.0;
/// Left edge of the plot areas (room for the y tick labels).
const LEFT: f64 = 80.0;
/// Right edge of the plot areas (room for the legends after it).
const RIGHT: f64 = 790.0;

/// One line of a chart.
struct Series<'a> {
    name: &'a str,
    color: &'a str,
    /// How the line is drawn, so that lines on top of each other (sent,
    /// received and confirmed at the same rate) all stay visible: a wide
    /// solid line under narrower dashed and dotted ones.
    style: LineStyle,
    /// A value per sample; `None` breaks the line.
    values: Vec<Option<f64>>,
}

/// The stroke of a line.
#[derive(Clone, Copy)]
enum LineStyle {
    /// Solid, wide: drawn first.
    Wide,
    /// Solid.
    Solid,
    /// Dashed.
    Dashed,
    /// Dotted.
    Dotted,
}

impl LineStyle {
    /// The SVG stroke attributes.
    fn attributes(self) -> &'static str {
        match self {
            LineStyle::Wide => r#"stroke-width="4" stroke-opacity="0.6""#,
            LineStyle::Solid => r#"stroke-width="1.8""#,
            LineStyle::Dashed => r#"stroke-width="1.8" stroke-dasharray="7 4""#,
            LineStyle::Dotted => r#"stroke-width="2" stroke-dasharray="2 3""#,
        }
    }
}

/// One chart: a title, its lines and how its y ticks read, drawn between
/// `top` and `bottom` (pixels).
struct Chart<'a> {
    title: &'a str,
    top: f64,
    bottom: f64,
    series: Vec<Series<'a>>,
    y_label: fn(f64) -> String,
}

/// Writes the SVG of `samples` to `path`.
pub fn write_svg(
    path: &Path,
    title: &str,
    subtitle: &str,
    samples: &[IntervalSample],
) -> Result<()> {
    std::fs::write(path, svg(title, subtitle, samples)).map_err(|e| {
        format!(
            "cannot write the plot to {}: {e}; check that its directory exists and is writable",
            path.display()
        )
        .into()
    })
}

/// The SVG document of `samples`, titled `title`, with `subtitle` (the
/// run's set-up) under it. Latencies are drawn in µs, in ms once they
/// reach 2 ms, in s once they reach 2 s.
///
/// ```
/// use pika_perf::load::output::IntervalSample;
/// let sample = IntervalSample {
///     at_s: 1.0, sent_per_s: 100.0, confirmed_per_s: 0.0, nacked_per_s: 0.0,
///     returned_per_s: 0.0, received_per_s: 100.0, consumer_latency: None,
///     confirm_latency: None,
/// };
/// let svg = pika_perf::load::plot::svg("a run", "1 producer", &[sample.clone(), IntervalSample { at_s: 2.0, ..sample }]);
/// assert!(svg.starts_with("<svg") && svg.contains("<polyline"));
/// ```
pub fn svg(title: &str, subtitle: &str, samples: &[IntervalSample]) -> String {
    let times: Vec<f64> = samples.iter().map(|s| s.at_s).collect();
    let confirms = samples.iter().any(|s| s.confirmed_per_s > 0.0);
    let mut rates = vec![
        Series {
            name: "sent",
            color: "#1f77b4",
            style: LineStyle::Wide,
            values: samples.iter().map(|s| Some(s.sent_per_s)).collect(),
        },
        Series {
            name: "received",
            color: "#ff7f0e",
            style: LineStyle::Dashed,
            values: samples.iter().map(|s| Some(s.received_per_s)).collect(),
        },
    ];
    if confirms {
        rates.push(Series {
            name: "confirmed",
            color: "#9467bd",
            style: LineStyle::Dotted,
            values: samples.iter().map(|s| Some(s.confirmed_per_s)).collect(),
        });
    }
    let largest_latency = samples
        .iter()
        .filter_map(|s| s.consumer_latency.as_ref().map(|l| l.p99))
        .max()
        .unwrap_or(0);
    let (unit, per_unit) = match largest_latency {
        0..2_000 => ("µs", 1.0),
        2_000..2_000_000 => ("ms", 1e3),
        _ => ("s", 1e6),
    };
    let latency = |pick: fn(&super::output::LatencyStats) -> u64| -> Vec<Option<f64>> {
        samples
            .iter()
            .map(|s| {
                s.consumer_latency
                    .as_ref()
                    .map(|l| pick(l) as f64 / per_unit)
            })
            .collect()
    };
    let latency_title = format!("consumer latency, {unit} (producer's clock to consumer)");
    let charts = [
        Chart {
            title: "messages per second",
            top: 70.0,
            bottom: 300.0,
            series: rates,
            y_label: short_number,
        },
        Chart {
            title: &latency_title,
            top: 360.0,
            bottom: 590.0,
            series: vec![
                Series {
                    name: "p50",
                    color: "#2ca02c",
                    style: LineStyle::Solid,
                    values: latency(|l| l.p50),
                },
                Series {
                    name: "p99",
                    color: "#d62728",
                    style: LineStyle::Solid,
                    values: latency(|l| l.p99),
                },
            ],
            y_label: plain_number,
        },
    ];

    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, "<title>{}</title>", escape(title));
    let _ = writeln!(
        out,
        r##"<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>"##
    );
    let _ = writeln!(
        out,
        r#"<text x="{}" y="24" font-size="16" font-weight="bold" text-anchor="middle">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
    let _ = writeln!(
        out,
        r##"<text x="{}" y="42" text-anchor="middle" fill="#444444">{}</text>"##,
        WIDTH / 2.0,
        escape(subtitle)
    );
    let (x_ticks, x_max) = ticks(times.iter().copied().fold(0.0, f64::max));
    for chart in &charts {
        draw_chart(&mut out, chart, &times, &x_ticks, x_max);
    }
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">time (s)</text>"#,
        (LEFT + RIGHT) / 2.0,
        HEIGHT - 12.0
    );
    if samples.is_empty() {
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle">no intervals were measured</text>"#,
            (LEFT + RIGHT) / 2.0,
            HEIGHT / 2.0
        );
    }
    out.push_str("</svg>\n");
    out
}

/// Draws one chart: frame, grid, ticks, labels, lines, legend.
fn draw_chart(out: &mut String, chart: &Chart<'_>, times: &[f64], x_ticks: &[f64], x_max: f64) {
    let y_top_value = chart
        .series
        .iter()
        .flat_map(|s| s.values.iter().flatten())
        .copied()
        .fold(0.0, f64::max);
    let (y_ticks, y_max) = ticks(y_top_value);
    let x = |t: f64| LEFT + (RIGHT - LEFT) * t / x_max;
    let y = |v: f64| chart.bottom - (chart.bottom - chart.top) * v / y_max;

    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="{}" font-size="13" font-weight="bold">{}</text>"#,
        chart.top - 10.0,
        escape(chart.title)
    );
    for &value in &y_ticks {
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{RIGHT}" y2="{py:.1}" stroke="#e0e0e0"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT - 6.0,
            y(value) + 4.0,
            (chart.y_label)(value),
            py = y(value),
        );
    }
    for &t in x_ticks {
        let _ = writeln!(
            out,
            r##"<line x1="{px:.1}" y1="{}" x2="{px:.1}" y2="{}" stroke="#000000"/><text x="{px:.1}" y="{}" text-anchor="middle">{}</text>"##,
            chart.bottom,
            chart.bottom + 5.0,
            chart.bottom + 18.0,
            short_number(t),
            px = x(t),
        );
    }
    // The axes, over the grid.
    let _ = writeln!(
        out,
        r##"<polyline points="{LEFT},{} {LEFT},{} {RIGHT},{}" fill="none" stroke="#000000"/>"##,
        chart.top, chart.bottom, chart.bottom
    );
    for (index, series) in chart.series.iter().enumerate() {
        for run in runs(&series.values) {
            let points: Vec<String> = run
                .iter()
                .map(|&i| {
                    let value = series.values[i].unwrap_or(0.0);
                    format!("{:.1},{:.1}", x(times[i]), y(value))
                })
                .collect();
            if let [point] = points.as_slice() {
                let (px, py) = point.split_once(',').unwrap_or(("0", "0"));
                let _ = writeln!(
                    out,
                    r#"<circle cx="{px}" cy="{py}" r="2.5" fill="{}"/>"#,
                    series.color
                );
            } else {
                let _ = writeln!(
                    out,
                    r#"<polyline points="{}" fill="none" stroke="{}" {}/>"#,
                    points.join(" "),
                    series.color,
                    series.style.attributes()
                );
            }
        }
        let legend_y = chart.top + 10.0 + 20.0 * index as f64;
        let _ = writeln!(
            out,
            r#"<line x1="{}" y1="{legend_y}" x2="{}" y2="{legend_y}" stroke="{}" {}/><text x="{}" y="{}">{}</text>"#,
            RIGHT + 15.0,
            RIGHT + 40.0,
            series.color,
            series.style.attributes(),
            RIGHT + 46.0,
            legend_y + 4.0,
            escape(series.name)
        );
    }
}

/// The indices of each unbroken run of `Some` values.
fn runs(values: &[Option<f64>]) -> Vec<Vec<usize>> {
    let mut runs: Vec<Vec<usize>> = Vec::new();
    let mut current = Vec::new();
    for (i, value) in values.iter().enumerate() {
        if value.is_some() {
            current.push(i);
        } else if !current.is_empty() {
            runs.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        runs.push(current);
    }
    runs
}

/// Round-number ticks from 0 up to `max` (1, 2 or 5 times a power of ten
/// apart, at most about 6 of them), and the last tick: the axis's end.
fn ticks(max: f64) -> (Vec<f64>, f64) {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let rough = max / 5.0;
    let power = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|step| *step >= rough)
        .unwrap_or(10.0 * power);
    // A value up to 2% past a tick is drawn just past the axis's end
    // rather than adding a tick: 3.006 s of intervals end the axis at 3.
    let count = ((max / step) - 0.02).ceil().max(1.0) as usize;
    let ticks: Vec<f64> = (0..=count).map(|i| i as f64 * step).collect();
    let end = ticks.last().copied().unwrap_or(1.0);
    (ticks, end)
}

/// `12000` as `12k`, `1500000` as `1.5M`, `0.5` as `0.5`.
fn short_number(value: f64) -> String {
    let trim = |text: String| {
        if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            text
        }
    };
    if value >= 1e6 {
        format!("{}M", trim(format!("{:.2}", value / 1e6)))
    } else if value >= 1e3 {
        format!("{}k", trim(format!("{:.2}", value / 1e3)))
    } else {
        trim(format!("{value:.2}"))
    }
}

/// `1500` as `1500`, `0.25` as `0.25`: for latencies, whose unit is
/// already scaled.
fn plain_number(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// `text` with XML's special characters escaped.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::output::LatencyStats;

    fn samples(n: usize) -> Vec<IntervalSample> {
        (1..=n)
            .map(|i| IntervalSample {
                at_s: i as f64,
                sent_per_s: 1000.0 * i as f64,
                confirmed_per_s: 0.0,
                nacked_per_s: 0.0,
                returned_per_s: 0.0,
                received_per_s: 900.0 * i as f64,
                // No deliveries in the third interval.
                consumer_latency: (i != 3).then_some(LatencyStats {
                    min: 5,
                    p50: 100 + i as u64,
                    p75: 150,
                    p95: 300,
                    p99: 400 + i as u64,
                    max: 900,
                }),
                confirm_latency: None,
            })
            .collect()
    }

    /// Checks that every element is closed in order: a small well-formedness
    /// check for the markup this module writes (no comments, no CDATA).
    fn assert_well_formed(svg: &str) {
        let mut open: Vec<&str> = Vec::new();
        let mut rest = svg;
        while let Some(start) = rest.find('<') {
            let end = rest[start..].find('>').expect("every tag is closed") + start;
            let tag = &rest[start + 1..end];
            assert!(!tag.contains('<'), "a tag inside a tag: {tag}");
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(open.pop(), Some(name), "closing {name}");
            } else if !tag.ends_with('/') {
                open.push(tag.split_whitespace().next().expect("a tag name"));
            }
            rest = &rest[end + 1..];
        }
        assert!(open.is_empty(), "left open: {open:?}");
    }

    #[test]
    fn the_svg_is_a_well_formed_document_with_lines_axes_and_a_legend() {
        let svg = svg("id: test 1 <&>", "producers 1", &samples(6));
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_well_formed(&svg);
        assert!(svg.contains("test 1 &lt;&amp;&gt;"));
        // sent, received, and p50 and p99 in two pieces each around the
        // gap, plus the two charts' axes.
        assert_eq!(svg.matches("<polyline").count(), 2 + 4 + 2);
        for label in [
            "sent",
            "received",
            "p50",
            "p99",
            "time (s)",
            "messages per second",
        ] {
            assert!(svg.contains(&format!(">{label}<")), "no label {label}");
        }
        assert!(!svg.contains(">confirmed<"), "no confirms in this run");
        assert!(svg.contains("consumer latency, µs"));
    }

    #[test]
    fn an_empty_run_still_gives_a_document() {
        let svg = svg("nothing", "", &[]);
        assert!(svg.starts_with("<svg"));
        assert_well_formed(&svg);
        assert!(svg.contains("no intervals were measured"));
    }

    #[test]
    fn ticks_are_round_numbers_covering_the_maximum() {
        assert_eq!(ticks(10.0), (vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0], 10.0));
        let (t, end) = ticks(12_345.0);
        assert_eq!(t[1], 5000.0);
        assert_eq!(end, 15_000.0);
        assert_eq!(ticks(0.0).1, 1.0);
        assert_eq!(short_number(12_000.0), "12k");
        assert_eq!(short_number(1_500_000.0), "1.5M");
        assert_eq!(short_number(0.5), "0.5");
        assert_eq!(short_number(40.0), "40");
    }

    #[test]
    fn large_latencies_are_drawn_in_milliseconds_or_seconds() {
        let mut slow = samples(2);
        for sample in &mut slow {
            sample.consumer_latency = sample.consumer_latency.map(|l| LatencyStats {
                p50: 20_000,
                p99: 45_000,
                ..l
            });
        }
        let in_ms = svg("slow", "", &slow);
        assert!(in_ms.contains("consumer latency, ms"));
        // 45 ms: the axis ends at 50.
        assert!(in_ms.contains(">50<"), "{in_ms}");
        for sample in &mut slow {
            sample.consumer_latency = sample.consumer_latency.map(|l| LatencyStats {
                p50: 1_500_000,
                p99: 3_900_000,
                ..l
            });
        }
        let in_s = svg("slower", "", &slow);
        assert!(in_s.contains("consumer latency, s "));
        // 3.9 s: ticks 0, 1, 2, 3, 4 s, without a "k".
        assert!(in_s.contains(">4<") && !in_s.contains(">4k<"), "{in_s}");
    }

    #[test]
    fn gaps_split_lines() {
        assert_eq!(
            runs(&[Some(1.0), None, Some(2.0), Some(3.0)]),
            vec![vec![0], vec![2, 3]]
        );
    }
}
