//! The server-load chart: p99 against achieved rate, one panel per model, with the SLA.

use plotters::prelude::*;

use super::{
    config_key, legend_key, log_ticks, plot_err, safe, short_number, small_multiples, MAX_TICKS,
};
use crate::error::Result;
use crate::report::Row;

/// The SLA's colour: a dark red no data series uses, drawn dashed and labelled on the plot.
pub(super) const SLA_COLOUR: RGBColor = RGBColor(170, 0, 0);

/// Small multiples, one panel per (model, mode) with its own colours: each server run's probes
/// (achieved rate against p99), its confirmation probe, and the SLA of the panel's runs as a
/// dashed, labelled line. The rate axis is logarithmic where a panel spans more than 10×.
pub(super) fn latency_throughput(title: &str, panels: &[(String, Vec<&Row>)]) -> Result<Vec<u8>> {
    // One panel a row: the legend beside each names hardware, backend, precision and batch.
    small_multiples(title, panels.len(), 1, 520, |area, i| {
        let (name, rows) = &panels[i];
        server_panel(area, name, rows)
    })
}

fn server_panel(
    area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    name: &str,
    rows: &[&Row],
) -> Result<()> {
    let (plot, legend) = area.split_horizontally(area.dim_in_pixel().0 * 56 / 100);
    let curve_of = |r: &Row| -> Vec<(f64, f64)> {
        let mut c: Vec<(f64, f64, f64)> = r
            .run
            .server
            .as_ref()
            .map(|s| {
                s.curve
                    .iter()
                    .filter(|c| c.p99_ms.is_finite() && c.achieved_qps > 0.0)
                    .map(|c| (c.offered_qps, c.achieved_qps, c.p99_ms))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        // In the order the search offered the rates: past saturation the achieved rate falls
        // back, and the line shows it doing so.
        c.sort_by(|a, b| a.0.total_cmp(&b.0));
        c.into_iter().map(|(_, x, y)| (x, y)).collect()
    };
    let pts: Vec<(f64, f64)> = rows.iter().flat_map(|r| curve_of(r)).collect();
    let mut slas: Vec<f64> = rows.iter().map(|r| r.run.spec.sla_p99_ms).collect();
    slas.sort_by(f64::total_cmp);
    slas.dedup();
    let (xmin, xmax) = (
        pts.iter().map(|p| p.0).fold(f64::INFINITY, f64::min),
        pts.iter().map(|p| p.0).fold(0.0, f64::max),
    );
    let ymax = pts
        .iter()
        .map(|p| p.1)
        .fold(0.0, f64::max)
        .max(slas.last().copied().unwrap_or(0.0))
        * 1.15;
    let log_x = xmin.is_finite() && xmax > 10.0 * xmin;
    macro_rules! body {
        ($xr:expr, $xdesc:expr, $x0:expr, $x1:expr) => {{
            let mut chart = ChartBuilder::on(&plot)
                .caption(name, ("sans-serif", 20))
                .margin(10)
                .x_label_area_size(40)
                .y_label_area_size(70)
                .build_cartesian_2d($xr, 0f64..ymax.max(1e-9))
                .map_err(plot_err)?;
            chart
                .configure_mesh()
                .x_desc($xdesc)
                .y_desc("p99 from scheduled arrival (ms)")
                .x_labels(MAX_TICKS)
                .y_labels(MAX_TICKS)
                .max_light_lines(1)
                .x_label_formatter(&|x| short_number(*x))
                .y_label_formatter(&|y| short_number(*y))
                .label_style(("sans-serif", 13))
                .axis_desc_style(("sans-serif", 14))
                .draw()
                .map_err(plot_err)?;
            // The SLA first, so the data is drawn over it: dashed, dark red, labelled.
            for sla in &slas {
                chart
                    .draw_series(DashedLineSeries::new(
                        vec![($x0, *sla), ($x1, *sla)],
                        10,
                        6,
                        SLA_COLOUR.stroke_width(2),
                    ))
                    .map_err(plot_err)?;
                chart
                    .draw_series(std::iter::once(Text::new(
                        format!("SLA p99 {sla} ms"),
                        ($x0, *sla),
                        TextStyle::from(("sans-serif", 14).into_font())
                            .color(&SLA_COLOUR)
                            .pos(plotters::style::text_anchor::Pos::new(
                                plotters::style::text_anchor::HPos::Left,
                                plotters::style::text_anchor::VPos::Bottom,
                            )),
                    )))
                    .map_err(plot_err)?;
            }
            for (i, r) in rows.iter().enumerate() {
                let color = safe(i);
                let gpu = r.run.spec.device != crate::spec::Device::Cpu;
                let curve = curve_of(r);
                let style = color.stroke_width(2);
                if gpu {
                    chart
                        .draw_series(DashedLineSeries::new(curve.clone(), 8, 5, style))
                        .map_err(plot_err)?;
                    chart
                        .draw_series(curve.iter().map(|p| {
                            EmptyElement::at(*p)
                                + Rectangle::new([(-3, -3), (3, 3)], color.filled())
                        }))
                        .map_err(plot_err)?;
                } else {
                    chart
                        .draw_series(LineSeries::new(curve.clone(), style))
                        .map_err(plot_err)?;
                    chart
                        .draw_series(curve.iter().map(|p| Circle::new(*p, 3, color.filled())))
                        .map_err(plot_err)?;
                }
                // The confirmation probe decides: a large dot where it met the SLA, a cross
                // where it did not (the run is then excluded from the decision).
                if let Some(c) = r.run.server.as_ref().and_then(|s| s.confirmation.as_ref()) {
                    let at = (c.achieved_qps.max(xmin), c.p99_ms);
                    if c.meets_sla {
                        chart
                            .draw_series(std::iter::once(Circle::new(at, 9, color.filled())))
                            .map_err(plot_err)?;
                    } else {
                        chart
                            .draw_series(std::iter::once(Cross::new(at, 9, color.stroke_width(3))))
                            .map_err(plot_err)?;
                    }
                }
            }
        }};
    }
    if log_x {
        let (lo, hi) = (xmin * 0.8, xmax * 1.25);
        body!(
            (lo..hi).log_scale().with_key_points(log_ticks(lo, hi)),
            "achieved requests per second (log scale)",
            lo,
            hi
        );
    } else {
        let hi = (xmax * 1.1).max(1e-9);
        body!(0f64..hi, "achieved requests per second", 0.0, hi);
    }
    for (i, r) in rows.iter().enumerate() {
        let y = 40 + 22 * i as i32;
        let gpu = r.run.spec.device != crate::spec::Device::Cpu;
        legend_key(&legend, y, safe(i), gpu)?;
        let s = &r.run.spec;
        legend
            .draw(&Text::new(
                format!("{} | b{}", config_key(r), s.batch),
                (42, y - 8),
                ("sans-serif", 14).into_font(),
            ))
            .map_err(plot_err)?;
    }
    Ok(())
}
