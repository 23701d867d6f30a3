//! The cost–quality chart: one panel per (model, mode, hardware), the Pareto front drawn.

use plotters::prelude::*;

use super::server::SLA_COLOUR;
use super::{log_ticks, plot_err, render, safe, MAX_TICKS};
use crate::error::Result;
use crate::report::quality::Plane;

/// One panel per group: each point coloured by its pruning recipe, a circle for fp32 and a
/// triangle for the other precisions, on a log cost axis (cost ratios read as distances); the
/// front is a line and its points are labelled with their levers. The section's table lists
/// every point with its label.
pub(super) fn cost_quality(
    title: &str,
    groups: &[crate::report::quality::Group],
    bar: Option<f64>,
    plane: Plane,
) -> Result<Vec<u8>> {
    // What colours a point and what makes it a circle: on the quality plane the pruning recipe
    // and an fp32 encoder, on the recall plane the index kind and fp32 item embeddings.
    let series = |s: &crate::spec::RunSpec| match (plane, s.retrieval) {
        (Plane::Recall, Some(r)) => r
            .index
            .to_string()
            .split(':')
            .next()
            .unwrap_or("")
            .to_string(),
        _ => s.prune.to_string(),
    };
    let circle = |s: &crate::spec::RunSpec| match (plane, s.retrieval) {
        (Plane::Recall, Some(r)) => r.item_precision == crate::spec::Precision::Fp32,
        _ => s.precision == crate::spec::Precision::Fp32,
    };
    let (y_desc, front_label) = match plane {
        Plane::Quality => (
            "top-10 overlap vs full fp32 model",
            "Pareto front (circle fp32, triangle fp16/bf16/int8)",
        ),
        Plane::Recall => (
            "recall@10 vs exact fp32 search",
            "Pareto front (circle fp32 items, triangle fp16/bf16/int8 items)",
        ),
    };
    let panel_h = 620u32;
    render((1400, 60 + panel_h * groups.len() as u32), |root| {
        root.draw(&Text::new(
            title.to_string(),
            (20, 15),
            ("sans-serif", 26).into_font(),
        ))
        .map_err(plot_err)?;
        let body = root.margin(50, 0, 0, 0);
        for (g, area) in groups.iter().zip(body.split_evenly((groups.len(), 1))) {
            let xy: Vec<(f64, f64)> = g.points.iter().map(|p| (p.cost_per_1k_usd, p.y)).collect();
            let xmax = xy.iter().map(|p| p.0).fold(0.0, f64::max).max(1e-12);
            let xmin = xy
                .iter()
                .map(|p| p.0)
                .fold(f64::INFINITY, f64::min)
                .min(xmax);
            // Quality is an overlap: the axis ends at 1 (the full model's own answer).
            let ymin = xy.iter().map(|p| p.1).fold(bar.unwrap_or(1.0), f64::min);
            let ylo = (ymin - 0.1).max(0.0);
            let mut chart = ChartBuilder::on(&area)
                .caption(g.title(), ("sans-serif", 20))
                .margin(15)
                .x_label_area_size(50)
                .y_label_area_size(80)
                .build_cartesian_2d(
                    (xmin / 1.25..xmax * 1.6)
                        .log_scale()
                        .with_key_points(log_ticks(xmin / 1.25, xmax * 1.6)),
                    ylo..1.0f64,
                )
                .map_err(plot_err)?;
            chart
                .configure_mesh()
                .x_labels(6)
                .y_labels(MAX_TICKS)
                .light_line_style(RGBColor(235, 235, 235))
                .x_desc("USD per 1M requests (log scale)")
                .y_desc(y_desc)
                .x_label_formatter(&|x| crate::cost::usd_per_1m(*x))
                .y_label_formatter(&|y| format!("{y:.2}"))
                .label_style(("sans-serif", 14))
                .axis_desc_style(("sans-serif", 16))
                .draw()
                .map_err(plot_err)?;
            let mut recipes: Vec<String> =
                g.points.iter().map(|p| series(&p.row.run.spec)).collect();
            recipes.sort();
            recipes.dedup();
            for (k, recipe) in recipes.iter().enumerate() {
                let colour = safe(k);
                let mine = || {
                    g.points
                        .iter()
                        .zip(&xy)
                        .filter(move |(p, _)| series(&p.row.run.spec) == *recipe)
                };
                chart
                    .draw_series(mine().map(|(p, &xy)| {
                        let fp32 = circle(&p.row.run.spec);
                        // Below the quality bar: hollow, no option.
                        let style = if bar.is_some_and(|b| xy.1 < b) {
                            colour.stroke_width(2)
                        } else {
                            colour.filled()
                        };
                        let marker: DynElement<_, _> = if fp32 {
                            Circle::new(xy, 7, style).into_dyn()
                        } else {
                            TriangleMarker::new(xy, 8, style).into_dyn()
                        };
                        marker
                    }))
                    .map_err(plot_err)?
                    .label(recipe.as_str())
                    .legend(move |(x, y)| Circle::new((x + 7, y), 6, colour.filled()));
            }
            if let Some(b) = bar {
                let (x0, x1) = (xmin / 1.25, xmax * 1.6);
                chart
                    .draw_series(DashedLineSeries::new(
                        vec![(x0, b), (x1, b)],
                        10,
                        6,
                        SLA_COLOUR.stroke_width(2),
                    ))
                    .map_err(plot_err)?
                    .label(format!(
                        "quality bar {b} (hollow: below it, not on the front)"
                    ))
                    .legend(|(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], SLA_COLOUR.stroke_width(2))
                    });
            }
            let front: Vec<(f64, f64)> = g.front.iter().map(|&i| xy[i]).collect();
            chart
                .draw_series(LineSeries::new(front, BLACK.stroke_width(2)))
                .map_err(plot_err)?
                .label(front_label)
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2))
                });
            // Each label at the first offset from its point where it overlaps no label placed
            // before it: below and right first (a point at overlap 1 sits on the top edge, and
            // a label above it would cross the title), then further down, then above.
            let mut placed: Vec<(i32, i32, i32, i32)> = Vec::new();
            for &i in &g.front {
                let label = crate::report::quality::lever_label(&g.points[i].row.run.spec);
                let (px, py) = chart.backend_coord(&xy[i]);
                // DejaVu Sans at 14 px: about 7.5 px a character, 16 px a line.
                let (w, h) = ((label.chars().count() as f64 * 7.5) as i32, 16);
                let free = |dx: i32, dy: i32| {
                    let (x0, y0) = (px + dx, py + dy);
                    placed
                        .iter()
                        .all(|&(a, b, c, d)| x0 + w <= a || c <= x0 || y0 + h <= b || d <= y0)
                };
                let offsets = [8, 24, 40, 56, 72, -24, -40, -56].map(|dy| (10, dy));
                let (dx, dy) = offsets
                    .into_iter()
                    .find(|&(dx, dy)| free(dx, dy))
                    .unwrap_or(offsets[0]);
                placed.push((px + dx, py + dy, px + dx + w, py + dy + h));
                // A label moved away from its point gets a thin line back to it.
                let leader = if dy == offsets[0].1 {
                    (0, 0)
                } else {
                    (dx - 2, dy + 7)
                };
                chart
                    .draw_series(std::iter::once(
                        EmptyElement::at(xy[i])
                            + PathElement::new(
                                vec![(0, 0), leader],
                                BLACK.mix(0.5).stroke_width(1),
                            )
                            + Text::new(label, (dx, dy), ("sans-serif", 14).into_font()),
                    ))
                    .map_err(plot_err)?;
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK)
                .label_font(("sans-serif", 14))
                .position(SeriesLabelPosition::LowerRight)
                .draw()
                .map_err(plot_err)?;
        }
        Ok(())
    })
}
