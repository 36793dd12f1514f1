//! The report as pictures for a person to read: throughput over time, the latency
//! distribution, answers by outcome per second (stacked), and red packets and the money they
//! carried over time.
//!
//! Numbers on the axes read as people write them (100k, 1.5M, ¥12.3k), not as the floats
//! the chart computes with (100000.0); time reads in seconds from the round's opening when
//! the run was told it (the countdown is negative), else from the start. What the answers
//! showed happen (a round opening and closing, a config change) is marked on the charts of
//! the night.

use std::path::{Path, PathBuf};

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use shake::wire::shake::Outcome;

use crate::load::{Report, Second as Tick};
use crate::seconds::Second;
use crate::GenError;

/// Draws one chart of a report into a file; an error is plotters' text.
type Plot = fn(&Report, &Path) -> Result<(), String>;

/// Writes `throughput.svg`, `latency.svg`, `answers.svg` and `money.svg` into `dir`;
/// returns their paths.
pub fn write(report: &Report, dir: &Path) -> Result<Vec<PathBuf>, GenError> {
    std::fs::create_dir_all(dir).map_err(|e| GenError::Svg {
        path: dir.to_owned(),
        message: e.to_string(),
    })?;
    let charts: [(&str, Plot); 4] = [
        ("throughput.svg", plot_throughput),
        ("latency.svg", plot_latency),
        ("answers.svg", plot_answers),
        ("money.svg", plot_money),
    ];
    let mut written = Vec::with_capacity(charts.len());
    for (name, plot) in charts {
        let path = dir.join(name);
        plot(report, &path).map_err(|message| GenError::Svg {
            path: path.clone(),
            message,
        })?;
        written.push(path);
    }
    Ok(written)
}

/// A count as people write it: 950, 1.5k, 12.3k, 100k, 1.5M, 2B. One decimal below 100 of
/// the unit (a trailing ".0" dropped), none above; a value that rounds up to 1000 of a unit
/// is written in the next (999 999 is "1M", not "1000k").
pub fn count_label(v: f64) -> String {
    if !v.is_finite() {
        return String::new();
    }
    const UNITS: [(f64, &str); 4] = [(1.0, ""), (1e3, "k"), (1e6, "M"), (1e9, "B")];
    let a = v.abs();
    let mut u = UNITS.iter().rposition(|&(f, _)| a >= f).unwrap_or(0);
    loop {
        let (f, suffix) = UNITS[u];
        let x = a / f;
        let decimals = if x < 99.95 { 1 } else { 0 };
        let text = format!("{x:.decimals$}");
        let rounded: f64 = text.parse().unwrap_or(x);
        if rounded >= 1000.0 && u + 1 < UNITS.len() {
            u += 1;
            continue;
        }
        let text = text.strip_suffix(".0").unwrap_or(&text);
        let sign = if v < 0.0 && text != "0" { "-" } else { "" };
        return format!("{sign}{text}{suffix}");
    }
}

/// An amount of money for an axis, in yuan: ¥0, ¥500, ¥1.5k, ¥12.3k.
pub fn money_label(yuan: f64) -> String {
    format!("¥{}", count_label(yuan))
}

/// Seconds on a time axis: whole ones as integers (-10, 0, 15), others to a tenth.
pub fn seconds_label(s: f64) -> String {
    let r = (s * 10.0).round() / 10.0;
    if r == 0.0 {
        "0".to_owned()
    } else if r.fract() == 0.0 {
        format!("{}", r as i64)
    } else {
        format!("{r:.1}")
    }
}

/// A whole number with its thousands grouped: 1,234,567.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Cents as yuan to the cent, grouped: ¥2,903.45.
pub fn money_exact(cents: u64) -> String {
    format!("¥{}.{:02}", grouped(cents / 100), cents % 100)
}

/// The stacked chart's order, bottom to top: what a round gives, then what it refuses.
pub const STACK: [Outcome; 7] = [
    Outcome::RedPacket,
    Outcome::Greeting,
    Outcome::Nothing,
    Outcome::Closed,
    Outcome::Throttled,
    Outcome::Denied,
    Outcome::Redirect,
];

fn color(o: Outcome) -> RGBColor {
    match o {
        Outcome::RedPacket => RGBColor(214, 39, 40),
        Outcome::Greeting => RGBColor(255, 170, 30),
        Outcome::Nothing => RGBColor(150, 190, 225),
        Outcome::Closed => RGBColor(125, 125, 125),
        Outcome::Throttled => RGBColor(148, 103, 189),
        Outcome::Denied => RGBColor(40, 40, 40),
        Outcome::Redirect => RGBColor(44, 160, 44),
    }
}

/// One outcome's part of a second's bar: from `from` answers up to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layer {
    pub outcome: Outcome,
    pub from: u64,
    pub to: u64,
}

/// A second's bar in the stacked chart: a layer per outcome that second has, in [`STACK`]
/// order, each starting where the one below ends; the top is the second's answers.
pub fn layers(s: &Second) -> Vec<Layer> {
    let mut from = 0;
    STACK
        .iter()
        .filter(|&&o| s.count(o) > 0)
        .map(|&o| {
            let to = from + s.count(o);
            let l = Layer {
                outcome: o,
                from,
                to,
            };
            from = to;
            l
        })
        .collect()
}

/// plotters' errors carry the backend's error type; what is kept of them is their text.
fn err<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// What the time axis counts from.
fn time_desc(r: &Report) -> &'static str {
    if r.opening_unix_ms.is_some() {
        "seconds from the round's opening"
    } else {
        "seconds from the start"
    }
}

/// The moments to mark on a chart of the night, as the answers showed them: rounds opening
/// and closing, and config changes.
fn markers(r: &Report) -> Vec<(f64, String, RGBColor)> {
    let mut m = Vec::new();
    for x in &r.round_marks {
        m.push(match x.opens {
            true => (
                x.t_s,
                format!("round {} opens", x.round_id),
                RGBColor(0, 120, 0),
            ),
            false => (
                x.t_s,
                format!("round {} closes", x.round_id),
                RGBColor(150, 0, 0),
            ),
        });
    }
    for c in &r.config_changes {
        m.push((
            c.t_s,
            "live config change".to_owned(),
            RGBColor(30, 60, 200),
        ));
    }
    m
}

/// The time span of the per-second charts: every second of the report and every marker.
fn time_span(r: &Report) -> (f64, f64) {
    let lo = r.seconds.first().map_or(0.0, |s| s.t_s as f64);
    let hi = r.seconds.last().map_or(1.0, |s| s.t_s as f64 + 1.0);
    markers(r)
        .iter()
        .fold((lo, hi), |(lo, hi), &(t, ..)| (lo.min(t), hi.max(t + 1.0)))
}

/// Vertical lines with their names at the markers, up to `top`: a name to the right of its
/// line, but a close's to the left (it comes late in a run, near the chart's right edge).
fn draw_markers(chart: &mut Chart<'_, '_>, r: &Report, top: f64) -> Result<(), String> {
    let (lo, hi) = time_span(r);
    let pad = (hi - lo) * 0.005;
    for (t, name, c) in markers(r) {
        chart
            .draw_series(LineSeries::new([(t, 0.0), (t, top)], c.stroke_width(2)))
            .map_err(err)?;
        let (x, h) = match name.ends_with("closes") {
            true => (t - pad, HPos::Right),
            false => (t + pad, HPos::Left),
        };
        let style = ("sans-serif", 13)
            .into_font()
            .color(&c)
            .pos(Pos::new(h, VPos::Top));
        chart
            .draw_series(std::iter::once(Text::new(name, (x, top), style)))
            .map_err(err)?;
    }
    Ok(())
}

fn plot_throughput(r: &Report, path: &Path) -> Result<(), String> {
    let root = SVGBackend::new(path, (800, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    // Each point covers the time since the one before (about a second; the last one, the
    // rest of the run): counts over that span are rates.
    let shift = r.timeline_shift_s;
    let pts = |f: fn(&Tick) -> u64| -> Vec<(f64, f64)> {
        let mut prev = 0.0;
        r.timeline
            .iter()
            .map(|s| {
                let span = (s.t_s - prev).max(1e-3);
                prev = s.t_s;
                (s.t_s + shift, f(s) as f64 / span)
            })
            .collect()
    };
    let sent = pts(|s| s.sent);
    let answered = pts(|s| s.answered + s.echoed);
    let t_max = r.timeline.last().map_or(1.0, |s| s.t_s).max(1.0) + shift;
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
        .y_label_area_size(60)
        .build_cartesian_2d(shift..t_max, 0.0..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(time_desc(r))
        .y_desc("per second")
        .x_label_formatter(&|x| seconds_label(*x))
        .y_label_formatter(&|y| count_label(*y))
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

/// Answers per second, one bar a second, stacked by outcome (a layer per outcome kind): the
/// countdown's CLOSED, the round's red packets, greetings and nothing, and what the node
/// refused.
fn plot_answers(r: &Report, path: &Path) -> Result<(), String> {
    let root = SVGBackend::new(path, (1000, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let root = root
        .titled(
            &format!(
                "answers per second by outcome: {} phones, {} answers",
                count_label(r.users as f64),
                grouped(r.tally.answered)
            ),
            ("sans-serif", 18),
        )
        .map_err(err)?;
    // The legend beside the chart, not on it: over the bars it hides a wave or a marker.
    let (root, legend) = root.split_horizontally(860);
    let (lo, hi) = time_span(r);
    let top = r
        .seconds
        .iter()
        .map(|s| s.answered() as f64)
        .fold(1.0, f64::max);
    let y_max = top * 1.12;
    let mut chart = ChartBuilder::on(&root)
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(lo..hi, 0.0..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc(time_desc(r))
        .y_desc("answers per second")
        .x_labels(16)
        .x_label_formatter(&|x| seconds_label(*x))
        .y_label_formatter(&|y| count_label(*y))
        .draw()
        .map_err(err)?;
    let bars: Vec<(i64, Vec<Layer>)> = r.seconds.iter().map(|s| (s.t_s, layers(s))).collect();
    let mut shown = 0;
    for o in STACK {
        let c = color(o);
        let rects: Vec<Rectangle<(f64, f64)>> = bars
            .iter()
            .flat_map(|(t, ls)| ls.iter().map(move |l| (*t, l)))
            .filter(|(_, l)| l.outcome == o)
            .map(|(t, l)| {
                Rectangle::new(
                    [(t as f64, l.from as f64), (t as f64 + 1.0, l.to as f64)],
                    c.filled(),
                )
            })
            .collect();
        if rects.is_empty() {
            continue;
        }
        chart.draw_series(rects).map_err(err)?;
        // Top to bottom as in the bars: the last drawn is the highest.
        let y = 260 - 22 * shown;
        legend
            .draw(&Rectangle::new([(8, y), (22, y + 14)], c.filled()))
            .map_err(err)?;
        legend
            .draw(&Text::new(
                o.name().to_uppercase(),
                (28, y + 1),
                ("sans-serif", 13),
            ))
            .map_err(err)?;
        shown += 1;
    }
    draw_markers(&mut chart, r, top * 1.06)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Red packets per second (bars, above) and the money issued so far (a line, below): the
/// round's pacing, as the phones saw it.
fn plot_money(r: &Report, path: &Path) -> Result<(), String> {
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let reds = r.tally.outcomes[Outcome::RedPacket as usize];
    let root = root
        .titled(
            &format!(
                "red packets and money the phones got: {} red packets, {}",
                grouped(reds),
                money_exact(r.tally.cents)
            ),
            ("sans-serif", 18),
        )
        .map_err(err)?;
    let (upper, lower) = root.split_vertically(250);
    let (lo, hi) = time_span(r);
    let red = color(Outcome::RedPacket);

    let top = r
        .seconds
        .iter()
        .map(|s| s.count(Outcome::RedPacket) as f64)
        .fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&upper)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(lo..hi, 0.0..top * 1.15)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc("red packets per second")
        .x_labels(16)
        .x_label_formatter(&|x| seconds_label(*x))
        .y_label_formatter(&|y| count_label(*y))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(r.seconds.iter().map(|s| {
            let t = s.t_s as f64;
            let n = s.count(Outcome::RedPacket) as f64;
            Rectangle::new([(t, 0.0), (t + 1.0, n)], red.filled())
        }))
        .map_err(err)?;
    draw_markers(&mut chart, r, top * 1.08)?;

    // The money so far at the end of each second, from 0 before the first.
    let mut so_far = 0u64;
    let mut line = vec![(lo, 0.0)];
    for s in &r.seconds {
        so_far += s.cents;
        line.push((s.t_s as f64 + 1.0, so_far as f64 / 100.0));
    }
    let total = (r.tally.cents as f64 / 100.0).max(1.0);
    let mut chart = ChartBuilder::on(&lower)
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(lo..hi, 0.0..total * 1.15)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc(time_desc(r))
        .y_desc("money issued so far")
        .x_labels(16)
        .x_label_formatter(&|x| seconds_label(*x))
        .y_label_formatter(&|y| money_label(*y))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(line, red.stroke_width(2)))
        .map_err(err)?;
    draw_markers(&mut chart, r, total * 1.08)?;
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
        .x_label_formatter(&|x| count_label(*x))
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

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn counts_read_as_people_write_them() {
        for (v, want) in [
            (0.0, "0"),
            (7.0, "7"),
            (950.0, "950"),
            (999.0, "999"),
            (1_000.0, "1k"),
            (1_500.0, "1.5k"),
            (12_345.0, "12.3k"),
            (20_000.000_000_4, "20k"),
            (99_960.0, "100k"),
            (100_000.0, "100k"),
            (150_000.0, "150k"),
            (999_999.0, "1M"),
            (1_500_000.0, "1.5M"),
            (110_000_000_000.0, "110B"),
            (0.5, "0.5"),
            (-10_000.0, "-10k"),
        ] {
            assert_eq!(count_label(v), want, "{v}");
        }
        assert_eq!(count_label(f64::NAN), "");
    }

    #[test]
    fn money_and_seconds_and_groups() {
        assert_eq!(money_label(12_345.0), "¥12.3k");
        assert_eq!(money_label(500.0), "¥500");
        assert_eq!(money_label(0.0), "¥0");
        assert_eq!(money_exact(290_345), "¥2,903.45");
        assert_eq!(money_exact(5), "¥0.05");
        assert_eq!(grouped(1_234_567), "1,234,567");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(100_000), "100,000");
        assert_eq!(seconds_label(-10.0), "-10");
        assert_eq!(seconds_label(-0.0001), "0");
        assert_eq!(seconds_label(15.000_000_1), "15");
        assert_eq!(seconds_label(2.5), "2.5");
    }

    fn second(t_s: i64, counts: &[(Outcome, u64)]) -> Second {
        let mut s = Second {
            t_s,
            ..Second::default()
        };
        for &(o, n) in counts {
            s.outcomes[o as usize] = n;
        }
        s
    }

    #[test]
    fn stacked_layers_add_up_to_each_seconds_answers() {
        let seconds = [
            second(-3, &[(Outcome::Closed, 98_000), (Outcome::Denied, 1_000)]),
            second(-2, &[]),
            second(
                0,
                &[
                    (Outcome::Nothing, 64_000),
                    (Outcome::Greeting, 30_000),
                    (Outcome::RedPacket, 120),
                    (Outcome::Denied, 990),
                    (Outcome::Throttled, 3),
                ],
            ),
        ];
        for s in &seconds {
            let ls = layers(s);
            // Contiguous from 0, in STACK order, and the top is the second's answers.
            let mut at = 0;
            for l in &ls {
                assert_eq!(l.from, at, "{s:?}");
                assert!(l.to > l.from, "no empty layer: {s:?}");
                assert_eq!(l.to - l.from, s.count(l.outcome));
                at = l.to;
            }
            assert_eq!(at, s.answered(), "{s:?}");
            let order: Vec<usize> = ls
                .iter()
                .map(|l| STACK.iter().position(|&o| o == l.outcome).unwrap())
                .collect();
            assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
        }
        let l = layers(&seconds[2]);
        assert_eq!(
            l.iter().map(|l| l.outcome).collect::<Vec<_>>(),
            vec![
                Outcome::RedPacket,
                Outcome::Greeting,
                Outcome::Nothing,
                Outcome::Throttled,
                Outcome::Denied
            ]
        );
        assert_eq!(
            l[0],
            Layer {
                outcome: Outcome::RedPacket,
                from: 0,
                to: 120
            }
        );
        assert!(layers(&seconds[1]).is_empty());
    }
}
