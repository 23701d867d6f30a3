//! The day chart: for the cheapest options of each (model, mode), the machines an autoscaled
//! fleet bills over the demand, beside the demand in machines' worth and the fleet sized for
//! the peak, with the minutes the demand outran the serving machines marked.

use plotters::prelude::*;

use super::{plot_err, render, safe, short_number, Chart, MAX_TICKS};
use crate::cost::day::{DayOption, Trace};
use crate::error::Result;
use crate::report::DayPlan;

/// Options drawn per (model, mode): the cheapest measured ones, as the table orders them.
pub const PER_GROUP: usize = 3;

/// Points a panel's lines are drawn from at most: the trace is cut into this many buckets
/// (whole steps each), the machines' maximum and the demand's mean of each drawn.
const POINTS: usize = 1440;

/// The demand's fill and the SLA marks.
const DEMAND: RGBColor = RGBColor(200, 200, 200);
const MISSED: RGBColor = RGBColor(170, 0, 0);

/// A panel: its title, the option and its colour.
struct Panel<'d> {
    title: String,
    option: &'d DayOption,
    colour: RGBColor,
}

/// The chart, or `None` where no group has an option to draw.
pub(super) fn chart(day: &DayPlan) -> Result<Option<Chart>> {
    let panels: Vec<Panel> = day
        .groups
        .iter()
        .flat_map(|g| {
            g.options
                .iter()
                .filter(|o| !o.upper_bound)
                .take(PER_GROUP)
                .enumerate()
                .map(move |(i, o)| Panel {
                    // The group's name without its parenthesis (the table gives it whole).
                    title: format!(
                        "{}: {}",
                        g.group.split(" (").next().unwrap_or(&g.group),
                        o.hardware_id
                    ),
                    option: o,
                    colour: safe(i),
                })
        })
        .collect();
    if panels.is_empty() {
        return Ok(None);
    }
    let title = "Over a day: machines billed by an autoscaled fleet, cheapest options";
    let cols = panels.len().min(PER_GROUP);
    let rows = panels.len().div_ceil(cols);
    let png = render((1600, 110 + 380 * rows as u32), |root| {
        let (top, body) = root.split_vertically(110);
        top.draw(&Text::new(title, (20, 15), ("sans-serif", 26).into_font()))
            .map_err(plot_err)?;
        legend(&top)?;
        for (p, area) in panels.iter().zip(body.split_evenly((rows, cols))) {
            panel(&area, p, day.trace)?;
        }
        Ok(())
    })?;
    Ok(Some(Chart {
        file: "day.png".into(),
        title: title.into(),
        caption: format!(
            "One panel per hardware option, the {PER_GROUP} cheapest measured options of each model and request shape as the table above orders them (offline upper bounds are not drawn). x: hours from the trace's start; y: machines. The grey area is the demand in machines' worth (requests per second over one machine's capacity within the budget); the coloured line the machines the autoscaled fleet bills (serving or starting); the dashed line the fleet sized for the peak all day; dark-red marks along the bottom the minutes in which the demand was above what the serving machines serve within the budget. Each point is a bucket of the trace: the most machines billed and the mean demand in it."
        ),
        png,
        series_per_panel: panels.iter().map(|p| (p.title.clone(), 1)).collect(),
        bars: Vec::new(),
    }))
}

fn legend(area: &DrawingArea<BitMapBackend, plotters::coord::Shift>) -> Result<()> {
    let y = 80;
    let font = ("sans-serif", 15).into_font();
    area.draw(&Rectangle::new([(20, y - 7), (50, y + 7)], DEMAND.filled()))
        .map_err(plot_err)?;
    area.draw(&Text::new(
        "demand, in machines' worth",
        (58, y - 8),
        font.clone(),
    ))
    .map_err(plot_err)?;
    area.draw(&PathElement::new(
        vec![(300, y), (330, y)],
        safe(0).stroke_width(3),
    ))
    .map_err(plot_err)?;
    area.draw(&Text::new(
        "machines billed, autoscaled (one colour per option)",
        (338, y - 8),
        font.clone(),
    ))
    .map_err(plot_err)?;
    for x in [720, 732, 744] {
        area.draw(&PathElement::new(
            vec![(x, y), (x + 7, y)],
            BLACK.stroke_width(2),
        ))
        .map_err(plot_err)?;
    }
    area.draw(&Text::new("sized for the peak", (760, y - 8), font.clone()))
        .map_err(plot_err)?;
    area.draw(&Rectangle::new(
        [(920, y - 7), (926, y + 7)],
        MISSED.filled(),
    ))
    .map_err(plot_err)?;
    area.draw(&Text::new(
        "demand above the serving machines (SLA missed)",
        (934, y - 8),
        font,
    ))
    .map_err(plot_err)?;
    Ok(())
}

/// `(hour, most machines billed, mean demand in machines, any step missed)` per bucket.
fn buckets(o: &DayOption, trace: &Trace) -> Vec<(f64, f64, f64, bool)> {
    let n = trace.qps.len();
    let per = n.div_ceil(POINTS).max(1);
    let f = &o.autoscaled;
    (0..n)
        .step_by(per)
        .map(|start| {
            let end = (start + per).min(n);
            let most = f.instances[start..end].iter().copied().max().unwrap_or(0);
            let demand = trace.qps[start..end].iter().sum::<f64>() / (end - start) as f64;
            let missed = (start..end)
                .any(|i| trace.qps[i] > f.serving[i] as f64 * o.capacity_per_instance_qps + 1e-9);
            (
                start as f64 * trace.step_s / 3600.0,
                most as f64,
                demand / o.capacity_per_instance_qps,
                missed,
            )
        })
        .collect()
}

fn panel(
    area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    p: &Panel,
    trace: &Trace,
) -> Result<()> {
    let o = p.option;
    let pts = buckets(o, trace);
    let hours = trace.duration_s() / 3600.0;
    let top = pts
        .iter()
        .map(|b| b.1.max(b.2))
        .fold(o.static_peak.peak_instances as f64, f64::max)
        * 1.15;
    let figures = format!(
        "peak {}, mean {:.1} machines; {}/day; {:.1} min over the SLA",
        o.autoscaled.peak_instances,
        o.autoscaled.mean_instances,
        crate::cost::usd(o.usd_per_day),
        o.autoscaled.seconds_over_sla / 60.0
    );
    let (head, area) = area.split_vertically(48);
    head.draw(&Text::new(
        p.title.clone(),
        (12, 4),
        ("sans-serif", 16).into_font(),
    ))
    .map_err(plot_err)?;
    head.draw(&Text::new(
        figures,
        (12, 26),
        ("sans-serif", 14).into_font(),
    ))
    .map_err(plot_err)?;
    // Whole machines on the axis: at least two, ticks on whole numbers only.
    let top = top.max(2.0);
    let mut chart = ChartBuilder::on(&area)
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..hours, 0f64..top)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("hours from the trace's start")
        .y_desc("machines")
        .x_labels(MAX_TICKS)
        .y_labels((top as usize + 1).min(MAX_TICKS))
        .max_light_lines(1)
        .x_label_formatter(&|x| {
            if hours >= 3.0 {
                format!("{x:.0}")
            } else {
                short_number(*x)
            }
        })
        .y_label_formatter(&|y| {
            if (y - y.round()).abs() < 1e-6 {
                format!("{y:.0}")
            } else {
                String::new()
            }
        })
        .label_style(("sans-serif", 12))
        .axis_desc_style(("sans-serif", 13))
        .draw()
        .map_err(plot_err)?;
    chart
        .draw_series(AreaSeries::new(
            pts.iter().map(|b| (b.0, b.2)),
            0.0,
            DEMAND.filled(),
        ))
        .map_err(plot_err)?;
    let peak = o.static_peak.peak_instances as f64;
    chart
        .draw_series(DashedLineSeries::new(
            vec![(0.0, peak), (hours, peak)],
            8,
            5,
            BLACK.stroke_width(2),
        ))
        .map_err(plot_err)?;
    // Machines change in steps: hold each bucket's count until the next.
    let steps: Vec<(f64, f64)> = pts
        .iter()
        .zip(
            pts.iter()
                .skip(1)
                .map(|b| b.0)
                .chain(std::iter::once(hours)),
        )
        .flat_map(|(b, next)| [(b.0, b.1), (next, b.1)])
        .collect();
    chart
        .draw_series(LineSeries::new(steps, p.colour.stroke_width(2)))
        .map_err(plot_err)?;
    let width = hours / pts.len().max(1) as f64;
    let mark = top * 0.03;
    chart
        .draw_series(pts.iter().filter(|b| b.3).map(|b| {
            Rectangle::new(
                [(b.0, 0.0), (b.0 + width.max(hours / 400.0), mark)],
                MISSED.filled(),
            )
        }))
        .map_err(plot_err)?;
    Ok(())
}
