//! Tests of the charts: series caps, data drawn, axes, the SLA colour.
use crate::cost::Catalog;
use crate::report::decision::Requirement;
use crate::report::{load_sources, price, Model};

/// Pixels of a PNG that are clearly coloured (not white, grey or black): data, not text.
fn coloured_pixels(png: &[u8]) -> usize {
    let img = image::load_from_memory(png).unwrap().to_rgb8();
    img.pixels()
        .filter(|p| {
            let [r, g, b] = p.0.map(i32::from);
            (r - g).abs() + (g - b).abs() + (b - r).abs() > 90
        })
        .count()
}

/// Renders every chart of `files` (paths from the crate root) and checks the series per
/// panel and that the data charts draw data. Returns the charts' panel counts by file.
fn every_chart(files: &[&str], maps: &[(String, String)]) -> Vec<(String, Vec<(String, usize)>)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let paths: Vec<_> = files.iter().map(|f| root.join(f)).collect();
    let sources = load_sources(&paths).unwrap();
    let catalog = Catalog::shipped_with(None).unwrap();
    let rows = price(&sources, &catalog, maps).unwrap();
    let req = Requirement {
        qps: Some(500.0),
        p99_ms: Some(100.0),
        ..Requirement::default()
    };
    let charts = super::all(&Model::new(&rows, &sources, &req)).unwrap();
    assert_eq!(charts.len(), 6);
    for c in &charts {
        assert!(!c.series_per_panel.is_empty(), "{}", c.file);
        for (panel, n) in &c.series_per_panel {
            assert!(
                *n <= super::MAX_SERIES,
                "{} panel {panel:?}: {n} series",
                c.file
            );
        }
        let ink = coloured_pixels(&c.png);
        let drawn = c.series_per_panel.iter().any(|p| p.1 > 0) && c.file != "cost_vs_quality.png";
        if drawn {
            assert!(ink > 4_000, "{} draws data: {ink} coloured pixels", c.file);
        }
    }
    charts
        .into_iter()
        .map(|c| (c.file, c.series_per_panel))
        .collect()
}

#[test]
fn every_chart_renders_from_the_reference_results_within_the_series_cap() {
    let maps = [("vm".to_string(), "aws-m7i-large".to_string())];
    let got = every_chart(
        &[
            "results/reference/quick/20261128T040112Z-vm.json",
            "results/reference/server-20261128/20261128T040254Z-vm.json",
        ],
        &maps,
    );
    let lat = &got
        .iter()
        .find(|c| c.0 == "latency_vs_batch.png")
        .unwrap()
        .1;
    // Four (model, mode) panels, three backends each.
    assert_eq!(lat.len(), 4, "{lat:?}");
    assert!(lat.iter().all(|p| p.1 == 3), "{lat:?}");
    // The energy chart draws the (estimated) energy of every option.
    let energy = &got.iter().find(|c| c.0 == "energy_per_1k.png").unwrap().1;
    assert_eq!(energy[0].1, 1);
}

#[test]
fn the_levers_results_draw_a_cost_quality_front_per_hardware() {
    let paths = crate::report::levers_reference_files();
    let files: Vec<&str> = paths.iter().map(|p| p.to_str().unwrap()).collect();
    let maps = [("vm".to_string(), "aws-m7i-large".to_string())];
    let got = every_chart(&files, &maps);
    let cq = &got.iter().find(|c| c.0 == "cost_vs_quality.png").unwrap().1;
    // Five recipes, one colour each, and the front.
    assert_eq!(
        cq,
        &[("minilm-l6 two-tower on aws-m7i-large".to_string(), 6)]
    );
    // The picture has data in it: blue points and a red front.
    let sources = load_sources(&paths).unwrap();
    let rows = price(&sources, &Catalog::shipped_with(None).unwrap(), &maps).unwrap();
    let charts = super::all(&Model::new(&rows, &sources, &Requirement::default())).unwrap();
    let png = &charts
        .iter()
        .find(|c| c.file == "cost_vs_quality.png")
        .unwrap()
        .png;
    assert!(coloured_pixels(png) > 4_000, "{}", coloured_pixels(png));
}

#[test]
fn every_chart_renders_from_a_cpu_and_gpu_fixture_within_the_series_cap() {
    // tests/fixtures/results-cpu-gpu.json: CPU runs copied from the reference results and
    // SYNTHETIC GPU runs (the CPU figures scaled), for this test only.
    let got = every_chart(&["tests/fixtures/results-cpu-gpu.json"], &[]);
    let lat = &got
        .iter()
        .find(|c| c.0 == "latency_vs_batch.png")
        .unwrap()
        .1;
    // One panel, CPU and GPU configurations in it: 3 backends × 2 devices.
    assert_eq!(lat, &vec![("minilm-l6 two-tower".to_string(), 6)]);
    let lt = &got
        .iter()
        .find(|c| c.0 == "latency_throughput.png")
        .unwrap()
        .1;
    assert_eq!(lt[0].1, 3 + 3, "three CPU and three GPU curves");
}

/// Log axes get at most MAX_TICKS labels, and at least two on a span of one decade.
#[test]
fn log_axes_carry_at_most_eight_labels() {
    for (lo, hi) in [
        (0.8, 12.5),
        (0.8, 320.0),
        (48.0, 700.0),
        (0.05, 5e5),
        (60.0, 600.0),
        (1.0, 10.0),
    ] {
        let t = super::log_ticks(lo, hi);
        assert!(t.len() <= super::MAX_TICKS, "{lo}..{hi}: {t:?}");
        assert!(t.len() >= 2 || hi / lo > 1e7, "{lo}..{hi}: {t:?}");
        assert!(t.iter().all(|v| *v >= lo && *v <= hi), "{t:?}");
    }
    assert_eq!(super::log_ticks(60.0, 600.0), [100.0, 200.0, 300.0, 500.0]);
    assert_eq!(
        super::log_ticks(0.8, 320.0),
        [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0]
    );
}

/// The SLA is drawn in a colour no data series uses (dashed dark red, labelled), in every
/// server-load panel; data series never take it.
#[test]
fn the_sla_line_has_its_own_colour_apart_from_the_data() {
    assert!(!super::SAFE.contains(&super::SLA_COLOUR));
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let sources = load_sources(&[root.join("tests/fixtures/results-cpu-gpu.json")]).unwrap();
    let rows = price(&sources, &Catalog::shipped_with(None).unwrap(), &[]).unwrap();
    let charts = super::all(&Model::new(&rows, &sources, &Requirement::default())).unwrap();
    let png = &charts
        .iter()
        .find(|c| c.file == "latency_throughput.png")
        .unwrap()
        .png;
    let img = image::load_from_memory(png).unwrap().to_rgb8();
    let c = super::SLA_COLOUR;
    let sla = img.pixels().filter(|p| p.0 == [c.0, c.1, c.2]).count();
    assert!(sla > 300, "{sla} SLA pixels");
}

/// A (model, mode) panel with more than MAX_SERIES configurations is split by hardware,
/// each part titled with it, every run kept: the reference runs as if measured on four
/// unpriced hosts (3 backends × 4 hosts = 12 configurations per panel).
#[test]
fn a_crowded_panel_is_split_by_hardware_and_keeps_every_run() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let sources =
        load_sources(&[root.join("results/reference/quick/20261128T040112Z-vm.json")]).unwrap();
    let rows = price(&sources, &Catalog::shipped_with(None).unwrap(), &[]).unwrap();
    let ok: Vec<_> = rows
        .iter()
        .filter(|r| r.run.status == crate::results::Status::Ok)
        .collect();
    let many: Vec<crate::report::Row> = (0..4)
        .flat_map(|h| {
            ok.iter().map(move |r| crate::report::Row {
                source: r.source,
                host: format!("host{h}"),
                run: r.run,
                mapping: r.mapping.clone(),
                cost: None,
            })
        })
        .collect();
    let mut panels = std::collections::BTreeMap::new();
    for r in &many {
        panels
            .entry(super::panel_key(r))
            .or_insert_with(Vec::new)
            .push(r);
    }
    let before: usize = panels.values().map(Vec::len).sum();
    let split = super::split_panels(panels);
    assert_eq!(split.iter().map(|p| p.1.len()).sum::<usize>(), before);
    for (title, rows) in &split {
        let configs = super::group_by(rows, super::config_key).len();
        assert!(configs <= super::MAX_SERIES, "{title}: {configs}");
        assert!(title.contains(" on host"), "{title}");
    }
    assert_eq!(
        split
            .iter()
            .filter(|p| p.0.starts_with("minilm-l6 two-tower on "))
            .count(),
        4
    );
}
