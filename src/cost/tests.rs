//! Tests of the cost model: catalog, prices, intervals, plans.
use super::*;

#[test]
fn cost_per_million_reads_with_three_significant_figures() {
    assert_eq!(usd_per_1m(0.000338), "$0.338");
    assert_eq!(usd_per_1m(0.0124), "$12.4");
    assert_eq!(usd_per_1m(0.00125), "$1.25");
    assert_eq!(usd_per_1m(1.2071), "$1,207");
    assert_eq!(usd_per_1m(1234.5), "$1,234,500");
    assert_eq!(usd_per_1m(f64::INFINITY), "—");
    assert_eq!(usd(1642.5), "$1,642.50");
    assert_eq!(usd(73.584), "$73.58");
    assert_eq!(usd(353137.0), "$353,137.00");
}

#[test]
fn cost_formula() {
    // $3.60/h at 1 request/s: $1 per 1000 requests.
    assert!((per_1k(3.6, 1.0) - 1.0).abs() < 1e-12);
    assert!((per_1k(0.36, 100.0) - 0.001).abs() < 1e-12);
}

#[test]
fn bootstrap_interval_brackets_the_rate() {
    let s: Vec<f64> = (0..200).map(|i| 10.0 + (i % 7) as f64 * 0.1).collect();
    let mean = s.iter().sum::<f64>() / s.len() as f64;
    let rate = 8.0 / (mean / 1e3);
    let (lo, hi) = bootstrap_rate_ci(&s, 8.0).unwrap();
    assert!(
        lo < rate && rate < hi && (hi - lo) / rate < 0.02,
        "{lo} {rate} {hi}"
    );
}

#[test]
fn catalog_errors_name_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, "[[hardware]]\nid = \"x\"\nprovider = \"aws\"\nkind = \"cpu\"\non_demand_usd_per_hour = -1.0\n").unwrap();
    let e = Catalog::load(&p, None).unwrap_err().to_string();
    assert!(
        e.contains(
            "c.toml:5: field `hardware.on_demand_usd_per_hour`: -1 is not a positive amount"
        ),
        "{e}"
    );
    std::fs::write(
        &p,
        "[[hardware]]\nid = \"x\"\nprovider = \"aws\"\nkind = \"cpu\"\nprice = 1\n",
    )
    .unwrap();
    let e = Catalog::load(&p, None).unwrap_err().to_string();
    assert!(
        e.contains("c.toml:5") && e.contains("unknown field `price`"),
        "{e}"
    );
    std::fs::write(
        &p,
        "[[hardware]]\nid = \"x\"\nprovider = \"aws\"\nkind = \"cpu\"\n",
    )
    .unwrap();
    let e = Catalog::load(&p, None).unwrap_err().to_string();
    assert!(e.contains("has no price"), "{e}");
    // Shapes: left out is unknown (0); written out, zero or less is refused where it is.
    let priced = "provider = \"aws\"\non_demand_usd_per_hour = 1.0\n";
    for (body, want) in [
        (
            "kind = \"cpu\"\nvcpus = 0\n",
            "c.toml:6: field `hardware.vcpus`: 0 is not a count",
        ),
        (
            "kind = \"cpu\"\nmemory_gib = -2.0\n",
            "c.toml:6: field `hardware.memory_gib`: -2 is not a positive amount",
        ),
        (
            "kind = \"gpu\"\ngpu_count = 0\n",
            "field `hardware.gpu_count`: a gpu entry needs gpu_count of at least 1",
        ),
    ] {
        std::fs::write(&p, format!("[[hardware]]\nid = \"x\"\n{priced}{body}")).unwrap();
        let err = Catalog::load(&p, None).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{err}");
        assert!(err.to_string().contains(want), "{err}\nwant: {want}");
    }
    std::fs::write(
        &p,
        format!("[[hardware]]\nid = \"x\"\n{priced}kind = \"cpu\"\n"),
    )
    .unwrap();
    let c = Catalog::load(&p, None).unwrap();
    let x = c.entries.iter().find(|e| e.id == "x").unwrap();
    assert_eq!((x.vcpus, x.memory_gib), (0, 0.0), "left out: unknown");
}

#[test]
fn shipped_catalog_is_valid_and_covers_cpu_and_gpu() {
    let c = Catalog::shipped_with(None).unwrap();
    assert!(c.entries.len() >= 12);
    for gpu in ["T4", "A10G", "L4", "A100", "H100", "H200"] {
        assert!(c.entries.iter().any(|e| e.gpu_model.contains(gpu)), "{gpu}");
    }
    assert!(c
        .entries
        .iter()
        .any(|e| e.kind == "cpu" && e.arch == "aarch64"));
    assert!(
        c.entries
            .iter()
            .filter(|e| e.kind == "cpu" && e.arch == "x86_64")
            .count()
            >= 2
    );
    for e in &c.entries {
        assert!(
            e.assumption || (!e.price_source.is_empty() && !e.price_date.is_empty()),
            "{} has no source",
            e.id
        );
    }
}

#[test]
fn user_catalog_replaces_by_id() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.toml");
    let b = dir.path().join("b.toml");
    std::fs::write(&a, "[[hardware]]\nid = \"x\"\nprovider = \"aws\"\nkind = \"cpu\"\non_demand_usd_per_hour = 1.0\n").unwrap();
    std::fs::write(&b, "[[hardware]]\nid = \"x\"\nprovider = \"aws\"\nkind = \"cpu\"\non_demand_usd_per_hour = 2.0\n[[hardware]]\nid = \"y\"\nprovider = \"owned\"\nkind = \"cpu\"\npurchase_usd = 5000.0\nlifetime_years = 4.0\n").unwrap();
    let c = Catalog::load(&a, Some(&b)).unwrap();
    assert_eq!(c.entries.len(), 2);
    assert_eq!(c.get("x").unwrap().on_demand_usd_per_hour, Some(2.0));
}

/// The committed reference sweep (a real file) and its first ok run.
fn reference() -> ResultsFile {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("results/reference/quick/20261128T040112Z-vm.json");
    ResultsFile::load(&p).unwrap()
}

fn entry(toml_text: &str) -> HardwareEntry {
    let mut f: CatalogFile = toml::from_str(toml_text).unwrap();
    f.hardware.remove(0)
}

#[test]
fn every_price_basis_is_priced_and_owned_hardware_adds_its_energy() {
    let file = reference();
    let mut r = file
        .runs
        .iter()
        .find(|r| r.status == Status::Ok)
        .unwrap()
        .clone();
    r.power.watts = None;
    let hw = entry(
        r#"[[hardware]]
id = "x"
provider = "p"
kind = "cpu"
on_demand_usd_per_hour = 1.0
reserved_1y_usd_per_hour = 0.6
spot_usd_per_hour = 0.3
purchase_usd = 17520.0
lifetime_years = 2.0
electricity_usd_per_kwh = 0.1
pue = 1.5
power_watts = 200.0
"#,
    );
    let c = cost_run(&r, &hw, 2).unwrap();
    let rps = r.throughput.as_ref().unwrap().requests_per_s;
    assert_eq!(c.rate_basis, RateBasis::OfflinePeak);
    assert_eq!(c.requests_per_s, rps);
    let hourly: Vec<(&str, f64)> = c
        .figures
        .iter()
        .map(|f| (f.basis.as_str(), f.hourly_usd))
        .collect();
    // Owned: 17,520 $ over 2 × 8,760 h = 1 $/h, plus 0.2 kW × 0.1 $/kWh × PUE 1.5.
    let want = [
        ("on-demand", 1.0),
        ("reserved-1y", 0.6),
        ("spot", 0.3),
        ("owned", 1.0 + 0.2 * 0.1 * 1.5),
    ];
    assert_eq!(hourly.len(), want.len(), "{hourly:?}");
    for ((b, h), (wb, wh)) in hourly.iter().zip(want) {
        assert_eq!(*b, wb);
        assert!((h - wh).abs() < 1e-12, "{b}: {h} vs {wh}");
    }
    for f in &c.figures {
        assert!((f.cost_per_1k_usd - per_1k(f.hourly_usd, rps)).abs() < 1e-15);
        assert!(f.ci_low_usd <= f.cost_per_1k_usd && f.cost_per_1k_usd <= f.ci_high_usd);
    }
    assert!(
        c.figures[3].note.contains("not measured"),
        "{}",
        c.figures[3].note
    );
    // A measured draw replaces the catalog's typical one.
    r.power.watts = Some(100.0);
    let owned = cost_run(&r, &hw, 2).unwrap().figures[3].hourly_usd;
    assert!((owned - (1.0 + 0.1 * 0.1 * 1.5)).abs() < 1e-12, "{owned}");
}

#[test]
fn a_gpu_run_on_a_multi_gpu_instance_is_charged_its_share() {
    let file = reference();
    let mut r = file
        .runs
        .iter()
        .find(|r| r.status == Status::Ok)
        .unwrap()
        .clone();
    let hw = entry(
        r#"[[hardware]]
id = "eight"
provider = "p"
kind = "gpu"
gpu_count = 8
on_demand_usd_per_hour = 80.0
"#,
    );
    assert_eq!(
        cost_run(&r, &hw, 2).unwrap().share,
        1.0,
        "a CPU run pays it all"
    );
    r.spec.device = crate::spec::Device::Cuda(3);
    let c = cost_run(&r, &hw, 2).unwrap();
    assert_eq!(c.share, 0.125);
    assert_eq!(c.figures[0].hourly_usd, 10.0);
    assert!(c.figures[0].note.contains("per-GPU share (1/8)"));
}

#[test]
fn hosts_are_mapped_by_cpu_model_and_vcpus_or_gpu_model_and_count_never_guessed() {
    let catalog = Catalog::shipped_with(None).unwrap();
    let mut file = reference();
    let inv = &mut file.environment.inventory;
    inv.cpu_model = Some("Intel(R) Xeon(R) Platinum 8488C".into());
    inv.logical_cores = 2;
    let m = map_host(&catalog, &file, false, None);
    assert_eq!(
        (m.hardware_id.as_deref(), m.how.as_str()),
        (Some("aws-m7i-large"), "auto")
    );
    file.environment.inventory.logical_cores = 3;
    let m = map_host(&catalog, &file, false, None);
    assert_eq!(m.hardware_id, None);
    assert!(m.detail.contains("none has 3 vCPUs"), "{}", m.detail);
    file.environment.inventory.cpu_model = Some("Imaginary CPU".into());
    let m = map_host(&catalog, &file, false, None);
    assert!(m.detail.contains("not guessed"), "{}", m.detail);
    // Explicit ids win, and must exist.
    let m = map_host(&catalog, &file, false, Some("aws-m7i-large"));
    assert_eq!(m.how, "explicit");
    let m = map_host(&catalog, &file, false, Some("nope"));
    assert_eq!((m.hardware_id, m.how.as_str()), (None, "unmapped"));
    // GPU runs: by GPU model and count.
    let gpu = crate::telemetry::gpu::Gpu {
        index: 0,
        name: "NVIDIA H200".into(),
        memory_bytes: None,
        driver: None,
        cuda_version: None,
        power_limit_watts: None,
    };
    file.environment.inventory.gpus = vec![gpu.clone()];
    let m = map_host(&catalog, &file, true, None);
    assert_eq!(m.hardware_id.as_deref(), Some("packetai-1x-h200-sxm"));
    // A host name mapped to a CPU entry (for its CPU runs) does not price its GPU runs.
    let m = map_host(&catalog, &file, true, Some("aws-m7i-large"));
    assert_eq!(
        (m.hardware_id.as_deref(), m.how.as_str()),
        (Some("packetai-1x-h200-sxm"), "auto")
    );
    assert!(m.detail.contains("not applied to GPU runs"), "{}", m.detail);
    let m = map_host(&catalog, &file, false, Some("aws-m7i-large"));
    assert_eq!(m.how, "explicit");
    let m = map_host(&catalog, &file, true, Some("packetai-1x-h200-sxm"));
    assert_eq!(m.how, "explicit");
    file.environment.inventory.gpus = vec![gpu.clone(), gpu];
    let m = map_host(&catalog, &file, true, None);
    assert_eq!(m.hardware_id, None, "no 2 × H200 entry: {}", m.detail);
}

/// A server run's capacity interval: the search's bracket without p99 intervals, widened where
/// a probe's interval says its verdict could have gone the other way.
#[test]
fn a_server_capacity_interval_widens_where_a_probes_p99_is_in_doubt() {
    use crate::results::{CurvePoint, ServerResult};
    // A probe at `rate` with p99 `p99` ms and its interval.
    let probe = |rate: f64, p99: f64, interval: Option<(f64, f64)>| CurvePoint {
        offered_qps: rate,
        achieved_qps: rate,
        completed: 500,
        p50_ms: 10.0,
        p90_ms: 20.0,
        p99_ms: p99,
        p99_interval_ms: interval,
        mean_ms: 12.0,
        mean_queue_delay_ms: 1.0,
        mean_batch: 1.0,
        scheduling_lag_p99_us: 10.0,
        meets_sla: p99 <= 100.0,
        early_stop: None,
        request_times: None,
    };
    let run = |curve: Vec<CurvePoint>| {
        let op = curve
            .iter()
            .filter(|c| c.meets_sla)
            .max_by(|a, b| a.offered_qps.total_cmp(&b.offered_qps))
            .cloned();
        ServerResult {
            max_batch: 1,
            max_queue_delay_ms: 0.0,
            instances: 1,
            sla_p99_ms: 100.0,
            confirmation: op.clone(),
            operating_point: op,
            curve,
        }
    };
    // Files from before the intervals: the bracket, from the operating point to the next rate.
    let bracket = run(vec![
        probe(50.0, 40.0, None),
        probe(100.0, 90.0, None),
        probe(150.0, 130.0, None),
        probe(200.0, 300.0, None),
    ]);
    assert_eq!(capacity_interval(&bracket), (100.0, 150.0));
    // Intervals clear of the SLA: the same bracket.
    let clear = run(vec![
        probe(50.0, 40.0, Some((35.0, 45.0))),
        probe(100.0, 90.0, Some((85.0, 95.0))),
        probe(150.0, 130.0, Some((120.0, 140.0))),
        probe(200.0, 300.0, Some((250.0, 350.0))),
    ]);
    assert_eq!(capacity_interval(&clear), (100.0, 150.0));
    // The operating point's p99 could be above the SLA, and the next rate's below it: the
    // interval runs from the rate below that met it beyond doubt to the first that missed.
    let doubt = run(vec![
        probe(50.0, 40.0, Some((35.0, 45.0))),
        probe(100.0, 90.0, Some((70.0, 115.0))),
        probe(150.0, 130.0, Some((95.0, 160.0))),
        probe(200.0, 300.0, Some((250.0, 350.0))),
    ]);
    assert_eq!(capacity_interval(&doubt), (50.0, 200.0));
    // No probe met it beyond doubt, none above missed beyond doubt: the operating point and
    // the highest rate that missed.
    let unsure = run(vec![
        probe(100.0, 90.0, Some((70.0, 115.0))),
        probe(150.0, 130.0, Some((95.0, 160.0))),
    ]);
    assert_eq!(capacity_interval(&unsure), (100.0, 150.0));
    // No operating point: nothing.
    assert_eq!(
        capacity_interval(&run(vec![probe(50.0, 300.0, None)])),
        (0.0, 0.0)
    );
}
