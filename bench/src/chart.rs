//! The `--svg` chart: latency by percentile, one curve per transport (x on a
//! "nines" scale, so p50, p90, p99 and p99.9 are evenly spaced; y log), and
//! wire bytes per delivery, one bar per transport. With several runs (a
//! `--compression` or `--encoding` list), bytes sent per delivery instead, by
//! transport × compression × encoding: on the wire, and before compression.

use std::path::Path;

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::report::{Matrix, Report, per_delivery};

const SIZE: (u32, u32) = (1200, 520);

pub fn write(report: &Report, path: &Path) -> Result<(), String> {
    draw(report, path).map_err(|e| format!("cannot draw {}: {e}", path.display()))
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw(report: &Report, path: &Path) -> DrawResult {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(760);
    latency(report, &left)?;
    bytes(report, &right)?;
    root.present()?;
    Ok(())
}

fn color(i: usize) -> RGBColor {
    const COLORS: [RGBColor; 4] =
        [RGBColor(31, 119, 180), RGBColor(255, 127, 14), RGBColor(44, 160, 44), RGBColor(214, 39, 40)];
    COLORS[i % COLORS.len()]
}

/// `x` on the nines scale is the quantile `1 − 10^−x`.
fn quantile(x: f64) -> f64 {
    1.0 - 10f64.powf(-x)
}

fn percentile_label(x: &f64) -> String {
    let p = 100.0 * quantile(*x);
    let label = format!("{p:.3}");
    format!("p{}", label.trim_end_matches('0').trim_end_matches('.'))
}

fn latency<DB: DrawingBackend>(report: &Report, area: &DrawingArea<DB, plotters::coord::Shift>) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let ms = |us: u64| (us as f64 / 1000.0).max(0.001);
    // Nines that the data can show: p99.9 needs a thousand deliveries.
    let most = report.transports.iter().map(|t| t.histogram.len()).max().unwrap_or(0).max(10);
    let x_max = (most as f64).log10().floor().clamp(1.0, 4.0);
    let lows = report.transports.iter().filter(|t| !t.histogram.is_empty()).map(|t| ms(t.histogram.min()));
    let highs = report.transports.iter().map(|t| ms(t.histogram.max()));
    let y_min = lows.fold(f64::MAX, f64::min).min(1.0) / 1.5;
    let y_max = highs.fold(0.0, f64::max).max(y_min * 10.0) * 1.5;

    let mut chart = ChartBuilder::on(area)
        .caption("Publish → receive latency by percentile", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max, (y_min..y_max).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms, log)")
        .x_labels(x_max as usize + 1)
        .x_label_formatter(&percentile_label)
        .y_label_formatter(&|ms| if *ms >= 1.0 { format!("{ms:.0}") } else { format!("{ms}") })
        .draw()?;
    for (i, t) in report.transports.iter().enumerate() {
        // With `--stall`, the clients that read all along and the stalled ones apart.
        let curves = match &t.stall {
            Some(s) => {
                vec![(&s.healthy, t.transport.to_string(), 1.0), (&s.stalled, format!("{} stalled", t.transport), 0.4)]
            }
            None => vec![(&t.histogram, t.transport.to_string(), 1.0)],
        };
        for (histogram, label, opacity) in curves.into_iter().filter(|(h, _, _)| !h.is_empty()) {
            let points = (0..=(x_max * 50.0) as usize).map(|k| {
                let x = k as f64 / 50.0;
                (x, ms(histogram.value_at_quantile(quantile(x))))
            });
            let style = color(i).mix(opacity).stroke_width(2);
            chart
                .draw_series(LineSeries::new(points, style))?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()?;
    Ok(())
}

fn bytes<DB: DrawingBackend>(report: &Report, area: &DrawingArea<DB, plotters::coord::Shift>) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let values: Vec<f64> = report.transports.iter().map(|t| t.wire_bytes_per_delivery.unwrap_or(0.0)).collect();
    let top = values.iter().copied().fold(1.0, f64::max) * 1.2;
    let names: Vec<&str> = report.transports.iter().map(|t| t.transport).collect();
    let mut chart = ChartBuilder::on(area)
        .caption("Wire bytes per delivery", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        // A segmented range has a slot past its end: n − 1 gives n slots.
        .build_cartesian_2d((0..names.len().max(2) - 1).into_segmented(), 0f64..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc("bytes (both directions, headers and framing included)")
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => names.get(*i).unwrap_or(&"").to_string(),
            SegmentValue::Last => String::new(),
        })
        .y_label_formatter(&|b| format!("{b:.0}"))
        .draw()?;
    let above = ("sans-serif", 15).into_font().into_text_style(area).pos(Pos::new(HPos::Center, VPos::Bottom));
    for (i, value) in values.iter().enumerate() {
        let mut bar = Rectangle::new(
            [(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), *value)],
            color(i).mix(0.8).filled(),
        );
        bar.set_margin(0, 0, 12, 12);
        chart.draw_series(std::iter::once(bar))?;
        let label = Text::new(format!("{value:.0}"), (SegmentValue::CenterOf(i), *value), above.clone());
        chart.draw_series(std::iter::once(label))?;
    }
    Ok(())
}

pub fn write_matrix(matrix: &Matrix, path: &Path) -> Result<(), String> {
    draw_matrix(matrix, path).map_err(|e| format!("cannot draw {}: {e}", path.display()))
}

/// One bar pair of the matrix chart.
struct Pair {
    transport: &'static str,
    variant: String,
    /// Server → client bytes per delivery on the wire, and before compression.
    wire: f64,
    uncompressed: Option<f64>,
}

/// Every transport of every run, grouped by transport, in run order.
fn pairs(matrix: &Matrix) -> Vec<Pair> {
    let mut transports: Vec<&'static str> = Vec::new();
    for t in matrix.runs.iter().flat_map(|r| &r.transports) {
        if !transports.contains(&t.transport) {
            transports.push(t.transport);
        }
    }
    let mut out = Vec::new();
    for transport in transports {
        for run in &matrix.runs {
            let Some(t) = run.transports.iter().find(|t| t.transport == transport) else { continue };
            // The bench's own count of what it read is the same bytes, for a server that does not tell.
            let read = per_delivery(t.wire_bytes_received, t.deliveries);
            let p = &run.parameters;
            out.push(Pair {
                transport,
                variant: format!(
                    "{} {}",
                    if p.compression.name() == "on" { "compr" } else { "plain" },
                    p.encoding.name()
                ),
                wire: t.server_bytes_sent_per_delivery.or(read).unwrap_or(0.0),
                uncompressed: t.server_bytes_sent_uncompressed_per_delivery,
            });
        }
    }
    out
}

fn draw_matrix(matrix: &Matrix, path: &Path) -> DrawResult {
    let pairs = pairs(matrix);
    let width = (120 * pairs.len() as u32 + 120).max(700);
    let root = SVGBackend::new(path, (width, SIZE.1)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = pairs.iter().map(|p| p.wire.max(p.uncompressed.unwrap_or(0.0))).fold(1.0, f64::max) * 1.2;
    let mut chart = ChartBuilder::on(&root)
        .caption("Bytes sent per delivery: on the wire (solid) and before compression (light)", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(60)
        .y_label_area_size(70)
        .build_cartesian_2d((0..pairs.len().max(2) - 1).into_segmented(), 0f64..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc("bytes per delivery (server → client, headers and framing included)")
        .x_labels(pairs.len())
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                let short = |t: &str| match t {
                    "websocket" => "ws".to_string(),
                    "webtransport" => "wt".to_string(),
                    _ => t.to_string(),
                };
                pairs.get(*i).map_or(String::new(), |p| format!("{} {}", short(p.transport), p.variant))
            }
            SegmentValue::Last => String::new(),
        })
        .y_label_formatter(&|b| format!("{b:.0}"))
        .draw()?;
    let above = ("sans-serif", 14).into_font().into_text_style(&root).pos(Pos::new(HPos::Center, VPos::Bottom));
    let mut transports: Vec<&str> = Vec::new();
    for (i, pair) in pairs.iter().enumerate() {
        if !transports.contains(&pair.transport) {
            transports.push(pair.transport);
        }
        let colour = color(transports.len() - 1);
        // Two bars in the slot: the wire on the left, uncompressed on the right.
        let bars = [(Some(pair.wire), 0.85, (8, 52)), (pair.uncompressed, 0.3, (52, 8))];
        for (value, opacity, (left, right)) in bars {
            let Some(value) = value else { continue };
            let mut bar = Rectangle::new(
                [(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), value)],
                colour.mix(opacity).filled(),
            );
            bar.set_margin(0, 0, left, right);
            chart.draw_series(std::iter::once(bar))?;
        }
        let label = Text::new(format!("{:.0}", pair.wire), (SegmentValue::CenterOf(i), pair.wire), above.clone());
        chart.draw_series(std::iter::once(label))?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nines_scale_names_its_percentiles() {
        let labels: Vec<String> = [0.0, 0.5, 1.0, 2.0, 3.0].iter().map(percentile_label).collect();
        assert_eq!(labels, ["p0", "p68.377", "p90", "p99", "p99.9"]);
    }
}
