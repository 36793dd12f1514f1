//! The report as pictures: throughput over time and the latency distribution, as SVG.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::load::{Report, Second};
use crate::GenError;

/// Writes `throughput.svg` and `latency.svg` into `dir`; returns their paths.
pub fn write(report: &Report, dir: &Path) -> Result<Vec<PathBuf>, GenError> {
    std::fs::create_dir_all(dir).map_err(|e| GenError::Svg {
        path: dir.to_owned(),
        message: e.to_string(),
    })?;
    let throughput = dir.join("throughput.svg");
    let latency = dir.join("latency.svg");
    plot_throughput(report, &throughput).map_err(|message| GenError::Svg {
        path: throughput.clone(),
        message,
    })?;
    plot_latency(report, &latency).map_err(|message| GenError::Svg {
        path: latency.clone(),
        message,
    })?;
    Ok(vec![throughput, latency])
}

/// plotters' errors carry the backend's error type; what is kept of them is their text.
fn err<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

fn plot_throughput(r: &Report, path: &Path) -> Result<(), String> {
    let root = SVGBackend::new(path, (800, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    // Each point covers the time since the one before (about a second; the last one, the
    // rest of the run): counts over that span are rates.
    let pts = |f: fn(&Second) -> u64| -> Vec<(f64, f64)> {
        let mut prev = 0.0;
        r.timeline
            .iter()
            .map(|s| {
                let span = (s.t_s - prev).max(1e-3);
                prev = s.t_s;
                (s.t_s, f(s) as f64 / span)
            })
            .collect()
    };
    let sent = pts(|s| s.sent);
    let answered = pts(|s| s.answered + s.echoed);
    let t_max = r.timeline.last().map_or(1.0, |s| s.t_s).max(1.0);
    let y_max = sent
        .iter()
        .chain(&answered)
        .map(|p| p.1)
        .fold(1.0, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("shake-gen: throughput ({}, {})", r.meta.mode, r.meta.target),
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..t_max, 0.0..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("per second")
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(sent, &BLUE))
        .map_err(err)?
        .label("sent")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart
        .draw_series(LineSeries::new(answered, &RED))
        .map_err(err)?
        .label("answered")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// The latency distribution as a CDF over a log scale of microseconds, with the
/// percentiles marked.
fn plot_latency(r: &Report, path: &Path) -> Result<(), String> {
    let root = SVGBackend::new(path, (800, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let total: u64 = r.latency_buckets_ns.iter().map(|b| b.2).sum();
    let mut seen = 0u64;
    let mut cdf = Vec::with_capacity(r.latency_buckets_ns.len() + 1);
    for &(_, hi, c) in &r.latency_buckets_ns {
        seen += c;
        cdf.push(((hi.max(1)) as f64 / 1e3, seen as f64 / total.max(1) as f64));
    }
    let lo = cdf.first().map_or(0.1, |p| p.0).max(0.01) / 1.5;
    let hi = cdf.last().map_or(10.0, |p| p.0).max(lo * 10.0) * 1.5;
    let l = &r.latency_ns;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "round trip: p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us",
                l.p50 as f64 / 1e3,
                l.p99 as f64 / 1e3,
                l.p999 as f64 / 1e3,
                l.max as f64 / 1e3
            ),
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d((lo..hi).log_scale(), 0.0..1.0)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("microseconds (log)")
        .y_desc("share of answers")
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(cdf, &BLUE))
        .map_err(err)?;
    for (q, v) in [(0.5, l.p50), (0.99, l.p99), (0.999, l.p999)] {
        let x = (v.max(1) as f64 / 1e3).clamp(lo, hi);
        chart
            .draw_series(std::iter::once(Circle::new((x, q), 4, RED.filled())))
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}
