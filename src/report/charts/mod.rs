//! PNG charts drawn with plotters and the bundled DejaVu Sans font (no system font needed).
//! Each has a title, axes with units and a legend; charts with nothing valid to draw say so.

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use super::{group_by, Row};
use crate::error::{Error, Result};
use crate::results::Status;
use crate::spec::Load;

/// The bundled font (DejaVu Sans, Bitstream Vera licence: assets/fonts/DejaVu-LICENSE.txt).
const FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");

/// A bar: label, value, optional interval, colour index (one colour per model and request
/// shape).
type Bar = (String, f64, Option<(f64, f64)>, usize);

/// A line: label, points, thin (p99) or thick (p50), colour index, on a GPU (dashed, squares)
/// or a CPU (solid, circles).
type Series = (String, Vec<(f64, f64)>, bool, usize, bool);

/// A panel of small multiples: its title and its series.
type Panel = (String, Vec<Series>);

/// Okabe–Ito: eight colours told apart with every common colour-vision deficiency.
const SAFE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
    RGBColor(240, 228, 66),
    RGBColor(0, 0, 0),
];

/// The colour of series `i` (at most 8 series a panel; beyond that colours repeat).
fn safe(i: usize) -> RGBColor {
    SAFE[i % SAFE.len()]
}

/// One chart: its file name, title, a caption saying what is drawn, and the PNG bytes.
pub struct Chart {
    pub file: String,
    pub title: String,
    pub caption: String,
    pub png: Vec<u8>,
    /// Each panel's title and the number of series (legend entries, one colour each) drawn in
    /// it; a bar chart is one panel of one series. Read by the tests that hold the cap.
    #[cfg_attr(not(test), allow(dead_code))]
    pub series_per_panel: Vec<(String, usize)>,
    /// A bar chart's bar labels, top first (empty for other charts): the image's alt text in
    /// the report, so what a bar says (its caveats too) can be read without the picture.
    pub bars: Vec<String>,
}

/// At most this many series (colours, legend entries) in one panel.
pub const MAX_SERIES: usize = 8;

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

fn plot_err(e: impl std::fmt::Display) -> Error {
    Error::Measure(format!("drawing a chart: {e}"))
}

/// Draws with `f` into a PNG of `size` and returns its bytes.
fn render(
    size: (u32, u32),
    f: impl FnOnce(&DrawingArea<BitMapBackend, plotters::coord::Shift>) -> Result<()>,
) -> Result<Vec<u8>> {
    register_font();
    let dir = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let path = dir.path().join("chart.png");
    {
        let root = BitMapBackend::new(&path, size).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        f(&root)?;
        root.present().map_err(plot_err)?;
    }
    std::fs::read(&path).map_err(|e| Error::io(&path, e))
}

fn empty(title: &str, why: &str) -> Result<Vec<u8>> {
    render((1000, 240), |root| {
        root.draw(&Text::new(
            title.to_string(),
            (20, 20),
            ("sans-serif", 26).into_font(),
        ))
        .map_err(plot_err)?;
        root.draw(&Text::new(
            format!("Nothing to draw: {why}"),
            (20, 90),
            ("sans-serif", 18).into_font().color(&RGBColor(120, 0, 0)),
        ))
        .map_err(plot_err)?;
        Ok(())
    })
}

/// Horizontal bars, first at the top, each with its value printed beside it and an optional
/// 95% interval (black whisker); the value axis is logarithmic where the values span more
/// than 10×. `value` formats a bar's value label (with its unit).
fn bars(
    title: &str,
    x_desc: &str,
    items: &[Bar],
    value: &dyn Fn(f64) -> String,
) -> Result<Vec<u8>> {
    let n = items.len();
    let hi = items
        .iter()
        .map(|(_, v, ci, _)| ci.map_or(*v, |c| c.1.max(*v)))
        .fold(0.0f64, f64::max);
    let lo = items
        .iter()
        .map(|(_, v, ci, _)| ci.map_or(*v, |c| c.0.min(*v)))
        .filter(|v| *v > 0.0)
        .fold(f64::INFINITY, f64::min);
    let log_x = lo.is_finite() && hi > 10.0 * lo;
    let height = (150 + 34 * n as u32).max(300);
    let at = |i: usize| n - 1 - i;
    let labels: Vec<String> = items.iter().map(|i| i.0.clone()).collect();
    let whisker = if items.iter().any(|i| i.2.is_some()) {
        "; black whisker: its interval (see the caption)"
    } else {
        ""
    };
    // The label area fits the longest label (about 7.5 px a character at 14 px), the plot
    // keeps 800 px beside it.
    let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0) as u32;
    let label_px = (longest * 15 / 2 + 20).clamp(300, 1400);
    render((label_px + 840, height), |root| {
        macro_rules! body {
            ($xr:expr, $base:expr, $right:expr, $desc:expr) => {{
                let mut chart = ChartBuilder::on(root)
                    .caption(title, ("sans-serif", 26))
                    .margin(15)
                    .x_label_area_size(50)
                    .y_label_area_size(label_px)
                    .build_cartesian_2d($xr, (0..n - 1).into_segmented())
                    .map_err(plot_err)?;
                chart
                    .configure_mesh()
                    .disable_y_mesh()
                    .x_desc($desc)
                    .x_labels(MAX_TICKS)
                    .x_label_formatter(&|x| short_number(*x))
                    .y_labels(n.max(1))
                    .y_label_formatter(&|v| match v {
                        SegmentValue::CenterOf(i) if *i < n => {
                            labels.get(at(*i)).cloned().unwrap_or_default()
                        }
                        _ => String::new(),
                    })
                    .label_style(("sans-serif", 14))
                    .axis_desc_style(("sans-serif", 16))
                    .draw()
                    .map_err(plot_err)?;
                chart
                    .draw_series(items.iter().enumerate().map(|(i, (_, v, _, c))| {
                        let mut r = Rectangle::new(
                            [
                                ($base, SegmentValue::Exact(at(i))),
                                (*v, SegmentValue::Exact(at(i) + 1)),
                            ],
                            safe(*c).mix(0.85).filled(),
                        );
                        r.set_margin(4, 4, 0, 0);
                        r
                    }))
                    .map_err(plot_err)?;
                chart
                    .draw_series(
                        items
                            .iter()
                            .filter_map(|(_, v, ci, _)| ci.map(|c| (*v, c)))
                            .zip(
                                items
                                    .iter()
                                    .enumerate()
                                    .filter(|(_, it)| it.2.is_some())
                                    .map(|(i, _)| i),
                            )
                            .map(|((v, (l, u)), i)| {
                                ErrorBar::new_horizontal(
                                    SegmentValue::CenterOf(at(i)),
                                    l,
                                    v,
                                    u,
                                    BLACK.stroke_width(2),
                                    10,
                                )
                            }),
                    )
                    .map_err(plot_err)?;
                // The value beside each bar (past its whisker).
                chart
                    .draw_series(items.iter().enumerate().map(|(i, (_, v, ci, _))| {
                        let end = ci.map_or(*v, |c| c.1.max(*v));
                        Text::new(
                            value(*v),
                            ($right(end), SegmentValue::CenterOf(at(i))),
                            TextStyle::from(("sans-serif", 14).into_font()).pos(
                                plotters::style::text_anchor::Pos::new(
                                    plotters::style::text_anchor::HPos::Left,
                                    plotters::style::text_anchor::VPos::Center,
                                ),
                            ),
                        )
                    }))
                    .map_err(plot_err)?;
            }};
        }
        if log_x {
            body!(
                (lo * 0.5..hi * 4.0)
                    .log_scale()
                    .with_key_points(log_ticks(lo * 0.5, hi * 4.0)),
                lo * 0.5,
                |e: f64| e * 1.08,
                format!("{x_desc}, log scale{whisker}")
            );
        } else {
            let max = (hi * 1.25).max(1e-12);
            body!(
                0f64..max,
                0.0,
                |e: f64| e + max * 0.01,
                format!("{x_desc}{whisker}")
            );
        }
        Ok(())
    })
}

/// Lines of y against batch (log2 axis), one per series.
/// Small multiples: one panel per (model, mode), two a row, each with its legend beside the
/// plot; the y axis is logarithmic in a panel whose values span more than 10×.
fn vs_batch(title: &str, y_desc: &str, panels: &[Panel]) -> Result<Vec<u8>> {
    small_multiples(title, panels.len(), panels.len().min(2), 460, |area, i| {
        let (name, series) = &panels[i];
        panel(area, name, y_desc, series)
    })
}

/// A 1600-px-wide picture of `n` panels, `cols` a row and `panel_h` px high each, under
/// `title`; `draw` fills panel `i` in its area.
fn small_multiples(
    title: &str,
    n: usize,
    cols: usize,
    panel_h: u32,
    mut draw: impl FnMut(&DrawingArea<BitMapBackend, plotters::coord::Shift>, usize) -> Result<()>,
) -> Result<Vec<u8>> {
    let rows = n.div_ceil(cols);
    render((1600, 60 + panel_h * rows as u32), |root| {
        let (top, body) = root.split_vertically(60);
        top.draw(&Text::new(
            title.to_string(),
            (20, 15),
            ("sans-serif", 26).into_font(),
        ))
        .map_err(plot_err)?;
        for (i, area) in body.split_evenly((rows, cols)).iter().take(n).enumerate() {
            draw(area, i)?;
        }
        Ok(())
    })
}

fn panel(
    area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    name: &str,
    y_desc: &str,
    series: &[Series],
) -> Result<()> {
    let (plot, legend) = area.split_horizontally(area.dim_in_pixel().0 * 56 / 100);
    let pts = || series.iter().flat_map(|s| s.1.iter());
    let (xmin, xmax) = (
        pts().map(|p| p.0).fold(f64::INFINITY, f64::min),
        pts().map(|p| p.0).fold(0.0, f64::max),
    );
    let ymin = pts()
        .map(|p| p.1)
        .filter(|y| *y > 0.0)
        .fold(f64::INFINITY, f64::min);
    let ymax = pts().map(|p| p.1).fold(0.0, f64::max);
    let log_y = ymin.is_finite() && ymax > 10.0 * ymin;
    let (x0, x1) = (xmin.max(1.0) * 0.8, xmax.max(2.0) * 1.25);
    macro_rules! body {
        ($yr:expr, $ydesc:expr) => {{
            let mut chart = ChartBuilder::on(&plot)
                .caption(name, ("sans-serif", 20))
                .margin(10)
                .x_label_area_size(40)
                .y_label_area_size(70)
                .build_cartesian_2d((x0..x1).log_scale().with_key_points(log_ticks(x0, x1)), $yr)
                .map_err(plot_err)?;
            chart
                .configure_mesh()
                .x_desc("batch (log scale)")
                .y_desc($ydesc)
                .x_labels(MAX_TICKS)
                .y_labels(MAX_TICKS)
                .max_light_lines(1)
                .x_label_formatter(&|x| format!("{x:.0}"))
                .y_label_formatter(&|y| short_number(*y))
                .label_style(("sans-serif", 13))
                .axis_desc_style(("sans-serif", 14))
                .draw()
                .map_err(plot_err)?;
            for (_, pts, thin, c, gpu) in series {
                let color = safe(*c);
                let style = color.stroke_width(if *thin { 1 } else { 3 });
                if *gpu {
                    chart
                        .draw_series(DashedLineSeries::new(pts.clone(), 8, 5, style))
                        .map_err(plot_err)?;
                } else {
                    chart
                        .draw_series(LineSeries::new(pts.clone(), style))
                        .map_err(plot_err)?;
                }
                // A square on a GPU, a circle on a CPU.
                let (style, size) = marker_style(*thin, color);
                if *gpu {
                    chart
                        .draw_series(pts.iter().map(|p| {
                            EmptyElement::at(*p)
                                + Rectangle::new([(-size, -size), (size, size)], style)
                        }))
                        .map_err(plot_err)?;
                } else {
                    chart
                        .draw_series(pts.iter().map(|p| Circle::new(*p, size, style)))
                        .map_err(plot_err)?;
                }
            }
        }};
    }
    if log_y {
        body!(
            (ymin * 0.8..ymax * 1.25)
                .log_scale()
                .with_key_points(log_ticks(ymin * 0.8, ymax * 1.25)),
            format!("{y_desc}, log scale")
        );
    } else {
        body!(0f64..(ymax * 1.15).max(1e-9), y_desc.to_string());
    }
    // The legend beside the plot: one line per colour (p50 and p99 of a configuration share
    // it), dashed with a square for a GPU, solid with a circle for a CPU.
    for (i, (label, _, _, c, gpu)) in series.iter().filter(|s| !s.2).enumerate() {
        let y = 40 + 22 * i as i32;
        legend_key(&legend, y, safe(*c), *gpu)?;
        legend
            .draw(&Text::new(
                label.clone(),
                (42, y - 8),
                ("sans-serif", 14).into_font(),
            ))
            .map_err(plot_err)?;
    }
    Ok(())
}

/// At most this many tick labels on an axis.
const MAX_TICKS: usize = 8;

/// Tick values for a logarithmic axis from `lo` to `hi`: the richest of the 1-2-3-5, 1-2-5,
/// 1-3 and 1 series (times powers of ten) that gives at most [`MAX_TICKS`] labels.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let (lo, hi) = (lo.min(hi), hi.max(lo));
    if !(lo > 0.0 && hi.is_finite()) {
        return Vec::new();
    }
    let series: [&[f64]; 4] = [&[1.0, 2.0, 3.0, 5.0], &[1.0, 2.0, 5.0], &[1.0, 3.0], &[1.0]];
    let ticks = |m: &[f64]| -> Vec<f64> {
        let mut out = Vec::new();
        let mut decade = 10f64.powf(lo.log10().floor());
        while decade <= hi {
            for k in m {
                let v = k * decade;
                if v >= lo && v <= hi {
                    out.push(v);
                }
            }
            decade *= 10.0;
        }
        out
    };
    series
        .iter()
        .map(|m| ticks(m))
        .find(|t| t.len() <= MAX_TICKS)
        .unwrap_or_else(|| ticks(&[1.0]))
}

/// A tick label without trailing zeros: 0.5, 20, 1.5k.
fn short_number(y: f64) -> String {
    if y.abs() >= 10_000.0 {
        format!("{:.0}k", y / 1000.0)
    } else if y.abs() >= 1000.0 {
        format!("{:.1}k", y / 1000.0)
    } else if y.abs() >= 10.0 || y == 0.0 {
        format!("{y:.0}")
    } else if y.abs() >= 1.0 {
        format!("{y:.1}")
    } else {
        format!("{y:.2}")
    }
}

/// A marker's style and half-size: filled for p50, hollow and smaller for p99 (thin).
fn marker_style(thin: bool, color: RGBColor) -> (ShapeStyle, i32) {
    if thin {
        (color.stroke_width(2), 4)
    } else {
        (color.filled(), 5)
    }
}

/// A legend key at height `y`: a line (dashed for a GPU) with the series' marker on it.
fn legend_key(
    area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    y: i32,
    color: RGBColor,
    gpu: bool,
) -> Result<()> {
    let style = color.stroke_width(3);
    if gpu {
        for x in [5, 17, 29] {
            area.draw(&PathElement::new(vec![(x, y), (x + 7, y)], style))
                .map_err(plot_err)?;
        }
        area.draw(&Rectangle::new([(15, y - 5), (25, y + 5)], color.filled()))
            .map_err(plot_err)?;
    } else {
        area.draw(&PathElement::new(vec![(5, y), (35, y)], style))
            .map_err(plot_err)?;
        area.draw(&Circle::new((20, y), 5, color.filled()))
            .map_err(plot_err)?;
    }
    Ok(())
}

/// The series of a panel: hardware (catalog id, or host when unpriced) first, then backend,
/// precision and sequence length.
fn config_key(r: &Row) -> String {
    let s = &r.run.spec;
    let hw = r
        .cost
        .as_ref()
        .map_or(r.host.clone(), |c| c.hardware_id.clone());
    // A retrieval sweep's runs differ by their search, not their batch: each is its own
    // configuration (drawn on the Retrieval panel), never a point on another's batch line.
    let search = s.retrieval.map_or(String::new(), |x| {
        format!(
            ", {} items {} {}",
            s.catalog_items, x.item_precision, x.index
        )
    });
    format!(
        "{hw} {} | {} {}{} s{}{search}",
        s.device,
        s.backend,
        s.precision,
        super::columns::prune_suffix(s),
        s.seq_len
    )
}

/// The bar label of a decision table option: model, mode, hardware, configuration, then `tail`
/// (the evidence and the figure's caveats for cost, what the energy covers for energy).
fn option_label(
    d: &super::decision::Decision,
    o: &super::decision::Candidate,
    tail: &str,
) -> String {
    let s = &o.row.run.spec;
    format!(
        "{} {} | {} ({}) | {} {}{} b{} | {tail}",
        d.model,
        d.mode.name(),
        o.hardware,
        if o.gpu { "GPU" } else { "CPU" },
        s.backend,
        s.precision,
        super::columns::prune_suffix(s),
        s.batch
    )
}

/// The panel of a run: its model and request shape.
fn panel_key(r: &Row) -> String {
    format!("{} {}", r.run.spec.model, r.run.spec.mode.name())
}

/// Panels of at most [`MAX_SERIES`] configurations: a (model, mode) panel with more is split by
/// hardware (its title names it), and a hardware panel with more still into parts.
fn split_panels<'r, 'a>(
    panels: std::collections::BTreeMap<String, Vec<&'r Row<'a>>>,
) -> Vec<(String, Vec<&'r Row<'a>>)> {
    let mut out = Vec::new();
    for (name, rows) in panels {
        if group_by(&rows, config_key).len() <= MAX_SERIES {
            out.push((name, rows));
            continue;
        }
        for (hw, hrows) in group_by(&rows, hardware_key) {
            let configs: Vec<(String, Vec<&Row>)> =
                group_by(&hrows, config_key).into_iter().collect();
            let parts = configs.len().div_ceil(MAX_SERIES);
            for (k, chunk) in configs.chunks(MAX_SERIES).enumerate() {
                let title = if parts > 1 {
                    format!("{name} on {hw} ({}/{parts})", k + 1)
                } else {
                    format!("{name} on {hw}")
                };
                out.push((title, chunk.iter().flat_map(|c| c.1.clone()).collect()));
            }
        }
    }
    out
}

/// The hardware of a row: its catalog id, or its host when unpriced.
fn hardware_key(r: &Row) -> String {
    r.cost
        .as_ref()
        .map_or(r.host.clone(), |c| c.hardware_id.clone())
}

/// Legend entries (colours) per panel; a chart with no panel is one empty panel titled `title`.
fn counts(panels: &[Panel], title: &str) -> Vec<(String, usize)> {
    if panels.is_empty() {
        return vec![(title.to_string(), 0)];
    }
    panels
        .iter()
        .map(|(name, series)| {
            let mut colours: Vec<usize> = series.iter().map(|s| s.3).collect();
            colours.sort();
            colours.dedup();
            (name.clone(), colours.len())
        })
        .collect()
}

/// Every chart of the report.
pub fn all(m: &super::Model) -> Result<Vec<Chart>> {
    let (rows, req) = (m.rows, m.req);
    let ok: Vec<&Row> = rows
        .iter()
        .filter(|r| r.run.status == Status::Ok && r.run.parity.as_ref().is_some_and(|p| p.passed))
        .collect();
    let mut charts = Vec::new();

    // 1. The decision table as a picture: $/1k at the budget per hardware option.
    let decisions = &m.decisions;
    let items: Vec<Bar> = decisions
        .iter()
        .enumerate()
        .flat_map(|(k, d)| {
            d.options.iter().map(move |o| {
                let evidence = match o.evidence {
                    super::decision::Evidence::Confirmed => "confirmed",
                    super::decision::Evidence::Curve => "curve",
                    super::decision::Evidence::UpperBound => "offline upper bound",
                };
                // Dollars per million requests: the unit the tables use.
                let caveats = super::notes::cost_caveats(o.row);
                let tail = if caveats.is_empty() {
                    evidence.to_string()
                } else {
                    format!("{evidence}; caveats: {}", caveats.join(", "))
                };
                (
                    option_label(d, o, &tail),
                    o.cost_per_1k_usd * 1000.0,
                    o.ci_usd.map(|(l, u)| (l * 1000.0, u * 1000.0)),
                    k,
                )
            })
        })
        .collect();
    let title = "Cost per million recommendations at the budget, per hardware option";
    charts.push(Chart {
        bars: items.iter().map(|b| b.0.clone()).collect(),
        file: "cost_per_1k.png".into(),
        title: title.into(),
        caption: format!("The decision table as a picture: for each model and request shape, each hardware option's cheapest configuration that meets {} and the quality bar, in USD per million requests on the {} price, with its interval where the evidence gives one (a 95% bootstrap interval for an offline peak, the search bracket for a server-load operating point). Excluded configurations are not drawn; the table lists them with the reason.", req.p99_ms.map_or("each run's own SLA".to_string(), |p| format!("p99 ≤ {p} ms")), req.basis),
        png: if items.is_empty() { empty(title, "no configuration qualifies (see the exclusions in the decision table)")? } else { bars(title, "USD per 1M requests", &items, &|v| crate::cost::usd_per_1m(v / 1000.0))? },
        series_per_panel: vec![(title.into(), usize::from(!items.is_empty()))],
    });

    // 2 and 3. Latency and throughput against batch (offline runs).
    // A line against batch needs two batch sizes: configurations measured at one only (the
    // levers sweep's) are drawn in the cost-vs-quality chart and listed in the runs table.
    let offline_all: Vec<&Row> = ok
        .iter()
        .copied()
        .filter(|r| r.run.spec.load == Load::Offline)
        .collect();
    let by_config = group_by(&offline_all, |r| {
        format!("{} {}", panel_key(r), config_key(r))
    });
    let batches = |rs: &[&Row]| {
        let mut b: Vec<usize> = rs.iter().map(|r| r.run.spec.batch).collect();
        b.sort_unstable();
        b.dedup();
        b.len()
    };
    let single = by_config.values().filter(|rs| batches(rs) < 2).count();
    let offline: Vec<&Row> = by_config
        .values()
        .filter(|rs| batches(rs) >= 2)
        .flat_map(|rs| rs.iter().copied())
        .collect();
    let left_out = if single > 0 {
        format!(" {single} configurations measured at one batch size only (a point, not a line against batch) are left out: the cost-vs-quality chart and the runs table show them.")
    } else {
        String::new()
    };
    let mut lat_panels: Vec<Panel> = Vec::new();
    let mut tp_panels: Vec<Panel> = Vec::new();
    for (panel, prs) in split_panels(group_by(&offline, panel_key)) {
        let (mut lat, mut tp) = (Vec::new(), Vec::new());
        for (ci, (name, rs)) in group_by(&prs, config_key).iter().enumerate() {
            let mut rs = rs.clone();
            rs.sort_by_key(|r| r.run.spec.batch);
            let p = |f: &dyn Fn(&Row) -> Option<f64>| -> Vec<(f64, f64)> {
                rs.iter()
                    .filter_map(|r| f(r).map(|y| (r.run.spec.batch as f64, y)))
                    .collect()
            };
            let gpu = rs
                .iter()
                .any(|r| r.run.spec.device != crate::spec::Device::Cpu);
            lat.push((
                name.clone(),
                p(&|r| r.run.latency.as_ref().map(|l| l.p50_ms)),
                false,
                ci,
                gpu,
            ));
            lat.push((
                format!("{name} p99"),
                p(&|r| r.run.latency.as_ref().map(|l| l.p99_ms)),
                true,
                ci,
                gpu,
            ));
            tp.push((
                name.clone(),
                p(&|r| r.run.throughput.as_ref().map(|t| t.requests_per_s)),
                false,
                ci,
                gpu,
            ));
        }
        lat_panels.push((panel.clone(), lat));
        tp_panels.push((panel, tp));
    }
    let no_line = if offline_all.is_empty() {
        "no valid offline run"
    } else {
        "every configuration was measured at one batch size only: no line against batch to draw (the cost-vs-quality chart and the runs table show them)"
    };
    let t2 = "Latency per forward pass vs batch (offline): thick p50, thin p99; dashed squares GPU, solid circles CPU";
    charts.push(Chart {
        bars: Vec::new(),
        file: "latency_vs_batch.png".into(),
        title: t2.into(),
        caption: format!("One panel per model and request shape (split by hardware where it would need more than {MAX_SERIES} colours); in each, one colour per hardware × backend × precision (legend beside the panel), p50 as a thick line with filled markers and p99 as a thin line with hollow ones, of one forward pass of `batch` requests including scoring and top-k (offline runs). A GPU's lines are dashed with squares, a CPU's solid with circles. The latency axis is logarithmic where a panel's values span more than 10×.{left_out}"),
        png: if lat_panels.is_empty() { empty(t2, no_line)? } else { vs_batch(t2, "latency per batch (ms)", &lat_panels)? },
        series_per_panel: counts(&lat_panels, t2),
    });
    let t3 = "Throughput vs batch (offline)";
    charts.push(Chart {
        bars: Vec::new(),
        file: "throughput_vs_batch.png".into(),
        title: t3.into(),
        caption: format!("One panel per model and request shape: requests per second of back-to-back batches (offline load), the peak a machine can do, an upper bound for latency-bound serving. A GPU's lines are dashed with squares, a CPU's solid with circles. Logarithmic where a panel's values span more than 10×.{left_out}"),
        png: if tp_panels.is_empty() { empty(t3, no_line)? } else { vs_batch(t3, "requests per second", &tp_panels)? },
        series_per_panel: counts(&tp_panels, t3),
    });

    // 4. Latency-throughput curves of server runs with the SLA line.
    let server: Vec<&Row> = ok
        .iter()
        .copied()
        .filter(|r| r.run.server.is_some())
        .collect();
    let t4 = "p99 latency vs throughput (server load) with the SLA";
    // One series per run: a panel with more runs than colours is cut into parts.
    let server_panels: Vec<(String, Vec<&Row>)> = group_by(&server, panel_key)
        .into_iter()
        .flat_map(|(name, rs)| {
            let parts = rs.len().div_ceil(MAX_SERIES);
            rs.chunks(MAX_SERIES)
                .enumerate()
                .map(|(k, c)| {
                    let title = if parts > 1 {
                        format!("{name} ({}/{parts})", k + 1)
                    } else {
                        name.clone()
                    };
                    (title, c.to_vec())
                })
                .collect::<Vec<_>>()
        })
        .collect();
    charts.push(Chart {
        bars: Vec::new(),
        file: "latency_throughput.png".into(),
        title: t4.into(),
        caption: "One panel per model and request shape, each with its own colours: every probed Poisson rate of the operating-point search, achieved requests/s against p99 latency from scheduled arrival; a GPU's curve dashed with squares, a CPU's solid with circles. The dashed dark-red line, labelled on the plot, is the SLA of the panel's runs. The large dot on a curve is the confirmation probe at its operating point, which met the SLA; a cross is a confirmation that missed it, and that configuration is excluded from the decision table.".into(),
        png: if server.is_empty() { empty(t4, "no valid run used server load")? } else { latency_throughput(t4, &server_panels)? },
        series_per_panel: if server.is_empty() {
            vec![(t4.into(), 0)]
        } else {
            server_panels.iter().map(|(name, rs)| (name.clone(), rs.len())).collect()
        },
    });

    // 5. Energy per 1k of the same options as the cost chart, each labelled with what its
    // figure covers (CPU package, GPU board, board + host estimate) and where it comes from.
    let energy: Vec<Bar> = decisions
        .iter()
        .enumerate()
        .flat_map(|(k, d)| {
            d.options.iter().filter_map(move |o| {
                let c = o.row.cost.as_ref()?;
                Some((
                    option_label(d, o, &c.power.covers),
                    o.energy_per_1k_joules?,
                    None,
                    k,
                ))
            })
        })
        .collect();
    let t5 = "Energy per 1,000 recommendations at the budget, per hardware option";
    let sources: Vec<String> = {
        let mut s: Vec<String> = ok
            .iter()
            .map(|r| {
                format!(
                    "{}: {}",
                    r.host,
                    r.cost
                        .as_ref()
                        .map_or("unpriced".into(), |c| c.power.basis.clone())
                )
            })
            .collect();
        s.sort();
        s.dedup();
        s
    };
    charts.push(Chart {
        bars: energy.iter().map(|b| b.0.clone()).collect(),
        file: "energy_per_1k.png".into(),
        title: t5.into(),
        caption: "The options of the decision table (as in the cost chart), in joules per 1,000 requests = average power over the measurement window × 1000 / requests per second; each bar names what its figure covers and where each part comes from: a CPU package (RAPL) or a GPU board (NVML) measured; a GPU board measured plus the host CPU estimated, where the catalog names the host's processor (else the bar says the host is not counted); a TDP estimate at run time; or a CCF estimate from the catalog entry's processor with the Cloud Carbon Footprint coefficients scaled by the run's measured CPU utilisation (see Method). Estimates are not measurements, and a board alone is not a machine.".into(),
        png: if energy.is_empty() {
            empty(t5, &format!("no option in the decision table has a power figure ({})", sources.join("; ")))?
        } else {
            bars(t5, "joules per 1,000 requests", &energy, &|v| format!("{v:.1} J"))?
        },
        series_per_panel: vec![(t5.into(), usize::from(!energy.is_empty()))],
    });

    // 6. Cost vs quality with the Pareto front, per (model, mode) and hardware option.
    let groups = &m.quality;
    let t6 = "Cost vs quality: the Pareto front of the levers";
    let spread = |g: &super::quality::Group| {
        let q = g.points.iter().map(|p| p.y);
        q.clone().fold(f64::NEG_INFINITY, f64::max) - q.fold(f64::INFINITY, f64::min)
    };
    charts.push(Chart {
        bars: Vec::new(),
        file: "cost_vs_quality.png".into(),
        title: t6.into(),
        caption: "One panel per model, request shape and hardware option. x: USD per million requests (headline basis); y: top-10 overlap of the catalog items each probe query retrieves, against the full model in fp32 (1 = the same recommendations). Each point is a valid run: its colour is its pruning recipe, a circle fp32 and a triangle a reduced precision (fp16, bf16 or int8); the line joins the Pareto front (no other configuration is both cheaper and closer to the full model), computed among the configurations that meet the quality bar where one is asked (`--min-quality`, the dashed dark-red line; points below it are hollow), its points labelled with their levers (backend, precision, recipe, batch). The table above lists every point with its levers. Invalid runs are never drawn.".into(),
        png: if groups.is_empty() {
            empty(t6, "no valid, priced run has a quality figure against the full model")?
        } else if groups.iter().all(|g| spread(g) < 1e-9) {
            empty(t6, "every configuration recommends what the full model does (top-10 overlap the same everywhere): nothing to trade; sweep [model] prune or int8 to see the trade")?
        } else {
            cost_quality(t6, groups, req.min_quality, Plane::Quality)?
        },
        series_per_panel: if groups.is_empty() {
            vec![(t6.into(), 0)]
        } else {
            groups
                .iter()
                .map(|g| {
                    let mut r: Vec<String> =
                        g.points.iter().map(|p| p.row.run.spec.prune.to_string()).collect();
                    r.sort();
                    r.dedup();
                    // One colour per recipe, plus the front.
                    (g.title(), r.len() + 1)
                })
                .collect()
        },
    });
    // 7. A retrieval sweep: cost against recall@10, one panel per catalog size (only when the
    // inputs hold one).
    if !m.retrieval.is_empty() {
        let t7 = "Retrieval: cost vs recall@10 of the catalog search";
        charts.push(Chart {
            bars: Vec::new(),
            file: "retrieval.png".into(),
            title: t7.into(),
            caption: "One panel per model, request shape, hardware option and catalog size of a retrieval sweep. x: USD per million requests (headline basis); y: recall@10 of the run's catalog search against an exact fp32 scan of the same catalog for the same 100 queries. Colour: the index (exact, hnsw, ivf); a circle fp32 item embeddings, a triangle fp16, bf16 or int8; the line joins the Pareto front, its points labelled with their settings. The Retrieval section's table lists every point with its encoder and search times.".into(),
            png: cost_quality(t7, &m.retrieval, None, Plane::Recall)?,
            series_per_panel: m
                .retrieval
                .iter()
                .map(|g| {
                    let mut r: Vec<String> = g
                        .points
                        .iter()
                        .filter_map(|p| p.row.run.spec.retrieval)
                        .map(|x| x.index.to_string().split(':').next().unwrap_or("").to_string())
                        .collect();
                    r.sort();
                    r.dedup();
                    (g.title(), r.len() + 1)
                })
                .collect(),
        });
    }
    // 8. The plan over a day (only when the reader gave a demand in time).
    if let Some(c) = m.day.as_ref().map(day::chart).transpose()?.flatten() {
        charts.push(c);
    }
    Ok(charts)
}

mod day;
mod quality;
mod server;
use crate::report::quality::Plane;
use quality::cost_quality;
use server::latency_throughput;
#[cfg(test)]
use server::SLA_COLOUR;

#[cfg(test)]
mod tests;
