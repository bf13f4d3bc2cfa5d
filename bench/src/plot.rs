//! The picture of a bench/compare run: broadcast p99 round trip and server
//! memory per connection against the number of clients, one line per target.

use crate::report::SuiteReport;
use clap::Args;
use plotters::prelude::*;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Args)]
pub struct PlotArgs {
    /// Results JSON written by bench/compare
    #[arg(long)]
    input: PathBuf,
    /// PNG to write
    #[arg(long)]
    output: PathBuf,
}

#[derive(Deserialize)]
struct Results {
    runs: Vec<SuiteReport>,
}

const COLORS: [RGBColor; 4] = [
    RGBColor(178, 34, 34),
    RGBColor(30, 100, 200),
    RGBColor(40, 150, 60),
    RGBColor(120, 60, 160),
];

type Series = BTreeMap<String, Vec<(f64, f64)>>;

fn series(runs: &[SuiteReport], value: impl Fn(&SuiteReport) -> Option<f64>) -> Series {
    let mut out: Series = BTreeMap::new();
    for r in runs {
        if let Some(v) = value(r) {
            out.entry(r.target.clone())
                .or_default()
                .push((r.clients as f64, v.max(0.001)));
        }
    }
    out
}

fn chart(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    title: &str,
    y_label: &str,
    data: &Series,
    targets: &[String],
) -> Result<(), Box<dyn std::error::Error>> {
    let max_x = data.values().flatten().map(|p| p.0).fold(1.0, f64::max);
    let max_y = data.values().flatten().map(|p| p.1).fold(0.01, f64::max);
    let min_y = data.values().flatten().map(|p| p.1).fold(max_y, f64::min);
    let mut c = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(
            0f64..max_x * 1.05,
            ((min_y / 2.0).max(0.001)..max_y * 2.0).log_scale(),
        )?;
    c.configure_mesh()
        .x_desc("clients")
        .y_desc(y_label)
        .draw()?;
    for (name, points) in data {
        let i = targets.iter().position(|t| t == name).unwrap_or(0) % COLORS.len();
        let color = COLORS[i];
        c.draw_series(LineSeries::new(
            points.iter().copied(),
            color.stroke_width(3),
        ))?
        .label(name.as_str())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3)));
        c.draw_series(points.iter().map(|p| Circle::new(*p, 4, color.filled())))?;
    }
    c.configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .draw()?;
    Ok(())
}

pub fn draw(a: &PlotArgs) {
    let text = std::fs::read_to_string(&a.input).expect("read the results file");
    let results: Results = serde_json::from_str(&text).expect("a bench/compare results file");
    let mut targets: Vec<String> = Vec::new();
    for r in &results.runs {
        if !targets.contains(&r.target) {
            targets.push(r.target.clone());
        }
    }
    let rtt = series(&results.runs, |r| Some(r.broadcast.rtt.p99_ms));
    let memory = series(&results.runs, |r| {
        r.idle.as_ref().map(|i| i.kib_per_connection)
    });
    let root = BitMapBackend::new(&a.output, (1400, 560)).into_drawing_area();
    root.fill(&WHITE).expect("fill");
    let (left, right) = root.split_horizontally(700);
    chart(
        &left,
        "Broadcast round trip, p99 (log scale)",
        "ms",
        &rtt,
        &targets,
    )
    .expect("draw the RTT chart");
    chart(
        &right,
        "Server memory per connection (log scale)",
        "KiB",
        &memory,
        &targets,
    )
    .expect("draw the memory chart");
    root.present().expect("write the PNG");
    eprintln!("wrote {}", a.output.display());
}
