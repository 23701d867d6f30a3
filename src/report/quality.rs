//! The cost–quality trade of the levers (precision, pruning, backend, batch): per (model, mode)
//! and hardware option, every valid priced run is a point — its cost per 1,000 requests on the
//! headline basis against its top-10 overlap with the full model in fp32 — and the Pareto front
//! joins the points no other point beats on both.
//!
//! Only valid runs take part (status ok, parity passed, priced, with a quality figure): an
//! invalid run's speed is never a result, so it is never a point either.

use std::collections::BTreeMap;

use super::Row;
use crate::model::Preset;
use crate::results::{Quality, Status};
use crate::spec::Mode;
use crate::spec::RunSpec;

/// One run on the cost–quality plane.
pub struct Point<'r, 'a> {
    pub row: &'r Row<'a>,
    /// USD per 1,000 requests, headline basis.
    pub cost_per_1k_usd: f64,
    pub quality: &'a Quality,
    /// The plane's y: the top-10 overlap with the full model (times the search's recall@10 in
    /// a retrieval sweep, see `decision::quality_top10`), or on the retrieval plane the
    /// search's recall@10 alone.
    pub y: f64,
}

/// The points of one (model, mode, hardware option) and its front.
pub struct Group<'r, 'a> {
    pub model: Preset,
    pub mode: Mode,
    pub hardware: String,
    /// A retrieval sweep's catalog size: its runs are compared at one size at a time.
    pub catalog_items: Option<usize>,
    /// Cheapest first.
    pub points: Vec<Point<'r, 'a>>,
    /// Indices into `points` of the Pareto front, cheapest first.
    pub front: Vec<usize>,
}

impl Group<'_, '_> {
    pub fn title(&self) -> String {
        let items = self
            .catalog_items
            .map_or(String::new(), |n| format!(", {} items", thousands(n)));
        format!(
            "{} {} on {}{items}",
            self.model,
            self.mode.name(),
            self.hardware
        )
    }
}

/// The lever settings of a run, as points are labelled: `backend precision [recipe] bBATCH`.
pub fn lever_label(s: &RunSpec) -> String {
    let search = s.retrieval.map_or(String::new(), |r| {
        format!(", {} items {}", r.item_precision, r.index)
    });
    format!(
        "{} {}{} b{}{search}",
        s.backend,
        s.precision,
        super::columns::prune_suffix(s),
        s.batch
    )
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Which plane a group is drawn on: the levers' quality, or a retrieval sweep's recall.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Plane {
    /// y = the top-10 overlap with the full model in fp32 (times recall@10 in a retrieval
    /// sweep); every valid priced run with a quality figure.
    Quality,
    /// y = recall@10 of the catalog search against an exact fp32 scan; retrieval sweeps only.
    Recall,
}

/// The Pareto front of (cost, quality) points: cheaper is better, higher quality is better.
/// Returns indices into `points`, cheapest first; of equal points the first is kept.
pub fn pareto(points: &[(f64, f64)]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by(|&a, &b| {
        (points[a].0.total_cmp(&points[b].0))
            .then(points[b].1.total_cmp(&points[a].1))
            .then(a.cmp(&b))
    });
    let mut front: Vec<usize> = Vec::new();
    for i in order {
        if front.last().is_none_or(|&l| points[i].1 > points[l].1) {
            front.push(i);
        }
    }
    front
}

/// The Pareto front among the points at or above the quality `bar` (all points without one):
/// a configuration below the bar is no option, so it cannot be on the front.
pub fn pareto_above(points: &[(f64, f64)], bar: Option<f64>) -> Vec<usize> {
    let keep: Vec<usize> = (0..points.len())
        .filter(|&i| bar.is_none_or(|b| points[i].1 >= b))
        .collect();
    let kept: Vec<(f64, f64)> = keep.iter().map(|&i| points[i]).collect();
    pareto(&kept).into_iter().map(|k| keep[k]).collect()
}

/// The cost–quality groups of `rows`, in (model, mode, hardware) order, each front computed
/// among the configurations that meet the quality `bar`.
pub fn groups<'r, 'a>(rows: &'r [Row<'a>], bar: Option<f64>, plane: Plane) -> Vec<Group<'r, 'a>> {
    type Key = (Preset, Mode, String, Option<usize>);
    let mut by: BTreeMap<Key, Vec<Point<'r, 'a>>> = BTreeMap::new();
    for r in rows {
        let run = r.run;
        let valid = run.status == Status::Ok && run.parity.as_ref().is_some_and(|p| p.passed);
        let (Some(q), Some(c), Some(hw)) = (&run.quality, r.headline(), r.cost.as_ref()) else {
            continue;
        };
        let y = match plane {
            Plane::Quality => super::decision::quality_top10(run),
            Plane::Recall => run
                .retrieval
                .as_ref()
                .filter(|_| run.spec.retrieval.is_some())
                .map(|x| x.recall_at_k),
        };
        let Some(y) = y.filter(|y| y.is_finite()) else {
            continue;
        };
        if valid {
            let items = run.spec.retrieval.map(|_| run.spec.catalog_items);
            by.entry((run.spec.model, run.spec.mode, hw.hardware_id.clone(), items))
                .or_default()
                .push(Point {
                    row: r,
                    cost_per_1k_usd: c.cost_per_1k_usd,
                    quality: q,
                    y,
                });
        }
    }
    by.into_iter()
        .map(|((model, mode, hardware, catalog_items), mut points)| {
            points.sort_by(|a, b| a.cost_per_1k_usd.total_cmp(&b.cost_per_1k_usd));
            let xy: Vec<(f64, f64)> = points.iter().map(|p| (p.cost_per_1k_usd, p.y)).collect();
            Group {
                model,
                mode,
                hardware,
                catalog_items,
                front: pareto_above(&xy, bar),
                points,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::pareto;
    use crate::cost::Catalog;
    use crate::report::{load_sources, price};

    /// The committed levers sweep: one group, its front drawn from valid runs only. A run whose
    /// parity fails leaves the points and, when it was on the front, the front.
    #[test]
    fn the_front_of_the_levers_sweep_is_drawn_from_valid_runs_only() {
        let paths = crate::report::levers_reference_files();
        let mut sources = load_sources(&paths).unwrap();
        let catalog = Catalog::shipped_with(None).unwrap();
        let maps = [("vm".to_string(), "aws-m7i-large".to_string())];
        let (n, cheapest_front) = {
            let rows = price(&sources, &catalog, &maps).unwrap();
            let g = super::groups(&rows, None, super::Plane::Quality);
            assert_eq!(g.len(), 1);
            let g = &g[0];
            assert_eq!(g.points.len(), 30);
            // Real, distinct points: cost and quality both vary along the front.
            let front: Vec<_> = g.front.iter().map(|&i| &g.points[i]).collect();
            assert!(front.len() >= 3, "{}", front.len());
            for w in front.windows(2) {
                assert!(w[0].cost_per_1k_usd < w[1].cost_per_1k_usd);
                assert!(w[0].y < w[1].y);
            }
            (g.points.len(), front[0].row.run.spec.id.clone())
        };
        for f in &mut sources {
            for r in &mut f.file.runs {
                if r.spec.id == cheapest_front {
                    // Parity failed but the status left ok: the front must check parity
                    // itself, not rely on invalid runs going unpriced.
                    r.parity.as_mut().unwrap().passed = false;
                }
            }
        }
        let rows = price(&sources, &catalog, &maps).unwrap();
        let g = &super::groups(&rows, None, super::Plane::Quality)[0];
        assert_eq!(g.points.len(), n - 1);
        assert!(g.points.iter().all(|p| p.row.run.spec.id != cheapest_front));
    }

    #[test]
    fn pareto_keeps_only_undominated_points_cheapest_first() {
        let pts = [
            (2.0, 0.99),
            (1.0, 0.95),
            (3.0, 0.999),
            (2.5, 0.98),
            (1.0, 0.90),
            (3.0, 0.999),
        ];
        let f = pareto(&pts);
        assert_eq!(f, vec![1, 0, 2]);
        // With a quality bar of 0.97, the cheap points below it are no options: the front
        // starts at the cheapest point that meets the bar.
        assert_eq!(super::pareto_above(&pts, Some(0.985)), vec![0, 2]);
        assert_eq!(super::pareto_above(&pts, Some(0.995)), vec![2]);
        assert_eq!(super::pareto_above(&pts, None), f);
    }

    /// The levers sweep at a quality bar of 0.9: every point on the front meets it (without
    /// the bar the front starts at 0.36–0.40 overlap).
    #[test]
    fn the_front_at_a_quality_bar_holds_only_configurations_above_it() {
        let paths = crate::report::levers_reference_files();
        let sources = load_sources(&paths).unwrap();
        let catalog = Catalog::shipped_with(None).unwrap();
        let maps = [("vm".to_string(), "aws-m7i-large".to_string())];
        let rows = price(&sources, &catalog, &maps).unwrap();
        let open = &super::groups(&rows, None, super::Plane::Quality)[0];
        let low = open.front.iter().map(|&i| open.points[i].y);
        assert!(
            low.fold(1.0, f64::min) < 0.9,
            "the fixture has a front below the bar"
        );
        let g = &super::groups(&rows, Some(0.9), super::Plane::Quality)[0];
        assert!(!g.front.is_empty());
        for &i in &g.front {
            assert!(g.points[i].y >= 0.9);
        }
        assert_eq!(
            g.points.len(),
            open.points.len(),
            "every point is still drawn"
        );
    }
}
