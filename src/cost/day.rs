//! Capacity over a day. A trace of demand (requests per second over time: a CSV of
//! `timestamp,qps`, or a seeded synthetic day), and a fleet of one configuration that follows it
//! with a target-utilisation autoscaler whose new replicas serve only once their cold start has
//! passed. What the fleet costs over the trace, its peak and mean instances, and the seconds its
//! serving capacity fell short of the demand, beside a fleet sized statically for the peak.

use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::util::rand::SplitMix64;

/// Demand over time: `qps[i]` requests per second during `[i·step_s, (i+1)·step_s)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    pub step_s: f64,
    pub qps: Vec<f64>,
}

/// The most steps a trace may have once put on its regular grid: a week at one-second
/// resolution is 604,800.
pub const MAX_STEPS: usize = 20_000_000;

impl Trace {
    pub fn duration_s(&self) -> f64 {
        self.step_s * self.qps.len() as f64
    }

    pub fn peak(&self) -> f64 {
        self.qps.iter().copied().fold(0.0, f64::max)
    }

    /// Requests over the whole trace.
    pub fn requests(&self) -> f64 {
        self.qps.iter().sum::<f64>() * self.step_s
    }
}

fn bad(path: &Path, line: usize, field: &str, msg: impl Into<String>) -> Error {
    Error::input(path, Some(line), field, msg.into())
}

/// A trace from the text of a CSV file at `path`: one `timestamp,qps` row per line (seconds, in
/// strictly increasing order; requests per second, a number ≥ 0), an optional header, `#`
/// comments and blank lines. Each rate holds until the next timestamp; the trace is put on a
/// regular grid of the smallest gap between two rows, the last row lasting one such step.
/// Unsorted or repeated timestamps, rates that are not numbers ≥ 0, a row without two columns
/// and a trace of fewer than two rows are bad input naming the line and column.
pub fn parse_trace(path: &Path, text: &str) -> Result<Trace> {
    const TS: &str = "column 1 (timestamp)";
    const QPS: &str = "column 2 (qps)";
    let mut rows: Vec<(f64, f64)> = Vec::new();
    let mut last_line = 0;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        last_line = n;
        let cols: Vec<&str> = l.split(',').map(str::trim).collect();
        if cols.len() != 2 {
            return Err(bad(
                path,
                n,
                TS,
                format!("{} column(s); each row is timestamp,qps", cols.len()),
            ));
        }
        if rows.is_empty() && cols[0].eq_ignore_ascii_case("timestamp") {
            continue;
        }
        let t: f64 = cols[0]
            .parse()
            .ok()
            .filter(|t: &f64| t.is_finite())
            .ok_or_else(|| {
                bad(
                    path,
                    n,
                    TS,
                    format!("{:?} is not a time in seconds", cols[0]),
                )
            })?;
        let q: f64 = cols[1]
            .parse()
            .ok()
            .filter(|q: &f64| q.is_finite() && *q >= 0.0)
            .ok_or_else(|| {
                bad(
                    path,
                    n,
                    QPS,
                    format!(
                        "{:?} is not a rate of requests per second (a number of at least 0)",
                        cols[1]
                    ),
                )
            })?;
        if let Some(&(prev, _)) = rows.last() {
            if t == prev {
                return Err(bad(
                    path,
                    n,
                    TS,
                    format!("timestamp {t} repeats the row above"),
                ));
            }
            if t < prev {
                return Err(bad(
                    path,
                    n,
                    TS,
                    format!("timestamp {t} comes before {prev} above: sort the trace by time"),
                ));
            }
        }
        rows.push((t, q));
    }
    if rows.len() < 2 {
        return Err(bad(
            path,
            last_line.max(1),
            TS,
            format!(
                "{} row(s) of timestamp,qps; a trace needs at least two",
                rows.len()
            ),
        ));
    }
    let step = rows
        .windows(2)
        .map(|w| w[1].0 - w[0].0)
        .fold(f64::INFINITY, f64::min);
    let steps = ((rows[rows.len() - 1].0 - rows[0].0) / step).round() as usize + 1;
    if steps > MAX_STEPS {
        return Err(bad(
            path,
            last_line,
            TS,
            format!(
                "the trace spans {steps} steps of {step} s (its smallest gap); at most {MAX_STEPS}"
            ),
        ));
    }
    let mut qps = Vec::with_capacity(steps);
    for w in rows.windows(2) {
        let k = ((w[1].0 - w[0].0) / step).round() as usize;
        qps.extend(std::iter::repeat_n(w[0].1, k));
    }
    qps.push(rows[rows.len() - 1].1);
    Ok(Trace { step_s: step, qps })
}

/// `--diurnal PEAK:TROUGH[:PERIOD]`: requests per second at the day's peak and trough, and the
/// period (seconds, or with an `s`, `m` or `h` suffix; a day by default).
pub fn parse_diurnal(s: &str) -> std::result::Result<(f64, f64, f64), String> {
    let parts: Vec<&str> = s.split(':').collect();
    if !(2..=3).contains(&parts.len()) {
        return Err(format!("{s:?}: give PEAK:TROUGH or PEAK:TROUGH:PERIOD"));
    }
    let rate = |p: &str, what: &str| -> std::result::Result<f64, String> {
        p.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| format!("{what} {p:?} is not a rate of requests per second"))
    };
    let (peak, trough) = (rate(parts[0], "peak")?, rate(parts[1], "trough")?);
    if trough > peak || peak <= 0.0 {
        return Err(format!(
            "{s:?}: the peak must be above 0 and at least the trough"
        ));
    }
    let period = match parts.get(2) {
        None => 86_400.0,
        Some(p) => {
            let (num, unit) = match p.char_indices().last() {
                Some((i, 's')) => (&p[..i], 1.0),
                Some((i, 'm')) => (&p[..i], 60.0),
                Some((i, 'h')) => (&p[..i], 3600.0),
                _ => (*p, 1.0),
            };
            num.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 60.0 / unit)
                .map(|v| v * unit)
                .ok_or_else(|| format!("period {p:?} is not a duration of at least a minute"))?
        }
    };
    Ok((peak, trough, period))
}

/// A seeded synthetic day, one step a second for `duration_s`: demand on a cosine between
/// `trough` (at the start) and `peak` (half a `period_s` later); each second's count is drawn
/// from a Poisson distribution around it; and bursts arrive as a Poisson process, on average one
/// an hour, each lasting one to five minutes at 1.2–2× the demand of the moment.
pub fn diurnal(peak: f64, trough: f64, period_s: f64, duration_s: f64, seed: u64) -> Trace {
    let mut rng = SplitMix64::new(seed);
    let steps = duration_s.round().max(1.0) as usize;
    let mut burst_left = 0usize;
    let mut burst_factor = 1.0;
    let qps = (0..steps)
        .map(|i| {
            let phase = std::f64::consts::TAU * i as f64 / period_s;
            let base = trough + (peak - trough) * (1.0 - phase.cos()) / 2.0;
            if burst_left == 0 && rng.next_f64() < 1.0 / 3600.0 {
                burst_left = 60 + (rng.next_f64() * 240.0) as usize;
                burst_factor = 1.2 + 0.8 * rng.next_f64();
            }
            let lambda = if burst_left > 0 {
                burst_left -= 1;
                base * burst_factor
            } else {
                base
            };
            poisson(&mut rng, lambda)
        })
        .collect();
    Trace { step_s: 1.0, qps }
}

/// A Poisson count of mean `lambda`: Knuth's product of uniforms up to 30, the normal
/// approximation (rounded, at least 0) above.
fn poisson(rng: &mut SplitMix64, lambda: f64) -> f64 {
    if lambda <= 0.0 {
        return 0.0;
    }
    if lambda > 30.0 {
        return (lambda + lambda.sqrt() * rng.next_normal())
            .round()
            .max(0.0);
    }
    let limit = (-lambda).exp();
    let mut k = 0.0;
    let mut p = rng.next_f64();
    while p > limit {
        k += 1.0;
        p *= rng.next_f64();
    }
    k
}

/// A target-utilisation autoscaler, as Kubernetes' horizontal pod autoscaler works: it wants
/// `⌈demand / (capacity × target)⌉` replicas; it starts more once the demand has wanted more
/// for `scale_up_delay_s`, and they serve `cold_start_s` later; it stops replicas once the demand
/// has wanted fewer for `scale_down_delay_s` (starting ones first), keeping the most it wanted
/// during that window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Autoscaler {
    /// Requests per second one replica serves within the latency budget (its measured operating
    /// point).
    pub capacity_qps: f64,
    /// The utilisation it sizes for, 1 / (1 + headroom).
    pub target: f64,
    pub scale_up_delay_s: f64,
    pub scale_down_delay_s: f64,
    /// From starting a replica to its first request served.
    pub cold_start_s: f64,
    pub min_replicas: u64,
}

/// A fleet over a trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fleet {
    /// Instances billed (serving or starting) at each step of the trace.
    #[serde(skip)]
    pub instances: Vec<u64>,
    /// Of those, the ones serving (started and past their cold start) at each step.
    #[serde(skip)]
    pub serving: Vec<u64>,
    pub peak_instances: u64,
    pub mean_instances: f64,
    /// Seconds in which the demand was above what the serving replicas serve within the budget.
    pub seconds_over_sla: f64,
    pub instance_hours: f64,
}

impl Fleet {
    fn of(instances: Vec<u64>, serving: Vec<u64>, seconds_over_sla: f64, step_s: f64) -> Fleet {
        let total: u64 = instances.iter().sum();
        Fleet {
            serving,
            peak_instances: instances.iter().copied().max().unwrap_or(0),
            mean_instances: total as f64 / instances.len().max(1) as f64,
            seconds_over_sla,
            instance_hours: total as f64 * step_s / 3600.0,
            instances,
        }
    }
}

impl Autoscaler {
    /// Replicas wanted for `qps`.
    pub fn wanted(&self, qps: f64) -> u64 {
        ((qps / (self.capacity_qps * self.target) - 1e-9)
            .ceil()
            .max(0.0) as u64)
            .max(self.min_replicas)
    }

    /// The fleet over `trace`, sized at its start for the first step's demand.
    pub fn simulate(&self, trace: &Trace) -> Fleet {
        let dt = trace.step_s;
        let mut ready = self.wanted(trace.qps.first().copied().unwrap_or(0.0));
        // When each starting replica serves its first request.
        let mut starting: Vec<f64> = Vec::new();
        let mut up_since: Option<f64> = None;
        let mut down: Option<(f64, u64)> = None;
        let mut over = 0.0;
        let mut instances = Vec::with_capacity(trace.qps.len());
        let mut serving = Vec::with_capacity(trace.qps.len());
        for (i, &q) in trace.qps.iter().enumerate() {
            let t = i as f64 * dt;
            let want = self.wanted(q);
            let have = ready + starting.len() as u64;
            if want > have {
                let since = *up_since.get_or_insert(t);
                if t - since >= self.scale_up_delay_s - 1e-9 {
                    starting.extend((have..want).map(|_| t + self.cold_start_s));
                    up_since = None;
                }
            } else {
                up_since = None;
            }
            if want < have {
                let (since, most) = down.get_or_insert((t, want));
                *most = (*most).max(want);
                if t - *since >= self.scale_down_delay_s - 1e-9 {
                    let keep = (*most).max(self.min_replicas);
                    while ready + starting.len() as u64 > keep && !starting.is_empty() {
                        starting.pop();
                    }
                    ready = ready.min(keep);
                    down = None;
                }
            } else {
                down = None;
            }
            let before = starting.len();
            starting.retain(|&at| at > t + 1e-9);
            ready += (before - starting.len()) as u64;
            if q > ready as f64 * self.capacity_qps + 1e-9 {
                over += dt;
            }
            instances.push(ready + starting.len() as u64);
            serving.push(ready);
        }
        Fleet::of(instances, serving, over, dt)
    }

    /// A fleet sized once for the trace's peak, all day.
    pub fn static_peak(&self, trace: &Trace) -> Fleet {
        let n = self.wanted(trace.peak());
        let over = trace
            .qps
            .iter()
            .filter(|&&q| q > n as f64 * self.capacity_qps + 1e-9)
            .count() as f64
            * trace.step_s;
        let all_day = vec![n; trace.qps.len()];
        Fleet::of(all_day.clone(), all_day, over, trace.step_s)
    }
}

/// How the fleet of every option follows the trace.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DaySettings {
    /// Spare capacity the autoscaler keeps (its target utilisation is 1 / (1 + headroom)).
    pub headroom: f64,
    pub scale_up_delay_s: f64,
    pub scale_down_delay_s: f64,
    /// From asking for a machine to its serving process starting (provisioning, boot, image
    /// pull): the reader's figure, said so in the output. Each option's measured process
    /// start (`PlanOption::process_start_s`) comes on top.
    pub cold_start_s: f64,
}

/// What the day plan assumed, in one sentence: the demand and how the fleets follow it.
pub fn describe(trace: &Trace, s: &DaySettings) -> String {
    format!(
        "Over {:.1} h of demand (peak {:.0}, mean {:.0} requests/s): an autoscaler aiming at \
         {:.0}% utilisation, starting machines after {} s and stopping them after {} s; a new \
         machine starts its serving process {} s after it is asked for (assumed, not \
         measured), and each option's measured process start (its run's cold start) comes on \
         top.",
        trace.duration_s() / 3600.0,
        trace.peak(),
        trace.requests() / trace.duration_s(),
        100.0 / (1.0 + s.headroom),
        s.scale_up_delay_s,
        s.scale_down_delay_s,
        s.cold_start_s
    )
}

/// One hardware option over the trace.
#[derive(Debug, Clone, Serialize)]
pub struct DayOption {
    pub hardware_id: String,
    pub run_id: String,
    pub evidence: String,
    /// An offline peak: an upper bound on what a machine serves, listed apart.
    pub upper_bound: bool,
    pub capacity_per_instance_qps: f64,
    pub hourly_usd: f64,
    pub autoscaled: Fleet,
    pub usd_per_day: f64,
    /// The cost per day at the ends of the capacity's interval (`cost::capacity_interval` under
    /// server load, a 95% bootstrap interval offline).
    pub usd_per_day_interval: Option<(f64, f64)>,
    pub usd_per_month: f64,
    /// Dollars per 1,000 requests of the trace, autoscaled.
    pub cost_per_1k_usd: f64,
    pub static_peak: Fleet,
    pub static_usd_per_day: f64,
    pub caveats: Vec<String>,
    /// A new replica's start to its first request at steady latency: the reader's machine
    /// start plus the run's measured process start.
    pub cold_start_s: f64,
    /// The measured part of `cold_start_s` (none for results from before it was measured).
    pub process_start_s: Option<f64>,
}

/// The options of one (model, mode) over the trace: measured capacities by cost per day, then
/// the offline upper bounds.
#[derive(Debug, Clone, Serialize)]
pub struct DayGroup {
    pub group: String,
    pub options: Vec<DayOption>,
}

/// The two cheapest measured options of a day (`options` as [`plan_day`] orders them) are a
/// statistical tie when the cheaper's cost per day at the top of its interval reaches the
/// other's at the bottom of its own: the sentence that says so, or `None`.
pub fn tie(options: &[DayOption]) -> Option<String> {
    let measured: Vec<&DayOption> = options.iter().filter(|o| !o.upper_bound).collect();
    let [a, b, ..] = measured.as_slice() else {
        return None;
    };
    let ((al, ah), (bl, bh)) = (a.usd_per_day_interval?, b.usd_per_day_interval?);
    (ah >= bl).then(|| {
        format!(
            "{} and {} are a statistical tie over the day: {}–{} against {}–{} a day across \
             their capacities' intervals; a finer operating-point search on each (more probes \
             near the budget, each longer: `[measure] min_s`) would separate them.",
            a.hardware_id,
            b.hardware_id,
            super::usd(al),
            super::usd(ah),
            super::usd(bl),
            super::usd(bh)
        )
    })
}

/// Every option of `groups` (a plan at the trace's peak) over `trace`.
pub fn plan_day(groups: &[super::PlanGroup], trace: &Trace, s: &DaySettings) -> Vec<DayGroup> {
    let per_day = 86_400.0 / trace.duration_s();
    groups
        .iter()
        .map(|g| {
            let mut options: Vec<DayOption> = g
                .options
                .iter()
                .filter(|o| o.capacity_per_instance_qps > 0.0)
                .map(|o| {
                    let cold_start_s = s.cold_start_s + o.process_start_s.unwrap_or(0.0);
                    let scaler = |capacity_qps: f64| Autoscaler {
                        capacity_qps,
                        target: 1.0 / (1.0 + s.headroom),
                        scale_up_delay_s: s.scale_up_delay_s,
                        scale_down_delay_s: s.scale_down_delay_s,
                        cold_start_s,
                        min_replicas: 1,
                    };
                    let usd = |f: &Fleet| f.instance_hours * o.hourly_usd * per_day;
                    let fleet = scaler(o.capacity_per_instance_qps).simulate(trace);
                    let static_peak = scaler(o.capacity_per_instance_qps).static_peak(trace);
                    let usd_per_day = usd(&fleet);
                    DayOption {
                        hardware_id: o.hardware_id.clone(),
                        run_id: o.run_id.clone(),
                        evidence: o.evidence.clone(),
                        upper_bound: o.evidence.starts_with("offline"),
                        capacity_per_instance_qps: o.capacity_per_instance_qps,
                        hourly_usd: o.hourly_usd,
                        // More capacity, fewer machines: the low end of the cost comes from
                        // the high end of the capacity.
                        usd_per_day_interval: o.capacity_interval_qps.map(|(lo, hi)| {
                            (
                                usd(&scaler(hi).simulate(trace)),
                                usd(&scaler(lo).simulate(trace)),
                            )
                        }),
                        usd_per_day,
                        usd_per_month: usd_per_day * super::HOURS_PER_MONTH / 24.0,
                        cost_per_1k_usd: fleet.instance_hours * o.hourly_usd
                            / (trace.requests() / 1000.0).max(1e-9),
                        static_usd_per_day: usd(&static_peak),
                        autoscaled: fleet,
                        static_peak,
                        caveats: o.caveats.clone(),
                        cold_start_s,
                        process_start_s: o.process_start_s,
                    }
                })
                .collect();
            options.sort_by(|a, b| {
                a.upper_bound
                    .cmp(&b.upper_bound)
                    .then(a.usd_per_day.total_cmp(&b.usd_per_day))
            });
            DayGroup {
                group: g.group.clone(),
                options,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scaler(cold_start_s: f64) -> Autoscaler {
        Autoscaler {
            capacity_qps: 100.0,
            target: 1.0,
            scale_up_delay_s: 0.0,
            scale_down_delay_s: 120.0,
            cold_start_s,
            min_replicas: 1,
        }
    }

    fn trace(f: impl Fn(usize) -> f64, n: usize) -> Trace {
        Trace {
            step_s: 1.0,
            qps: (0..n).map(f).collect(),
        }
    }

    /// Demand steps from 100 to 500 requests/s at 600 s, and stays there: four replicas start at
    /// once and serve 60 s later, so the fleet misses the budget for exactly those 60 s, and
    /// bills 1 instance for 600 s and 5 for the 1,200 s after.
    #[test]
    fn a_step_is_missed_for_one_cold_start() {
        let t = trace(|i| if i < 600 { 100.0 } else { 500.0 }, 1800);
        let f = scaler(60.0).simulate(&t);
        assert_eq!(f.seconds_over_sla, 60.0);
        assert_eq!(f.peak_instances, 5);
        assert!((f.mean_instances - (600.0 + 5.0 * 1200.0) / 1800.0).abs() < 1e-9);
        assert!((f.instance_hours - (600.0 + 5.0 * 1200.0) / 3600.0).abs() < 1e-9);
        // With no cold start the step is never missed.
        assert_eq!(scaler(0.0).simulate(&t).seconds_over_sla, 0.0);
        // Sized for the peak all day: never missed, 5 instances throughout.
        let s = scaler(60.0).static_peak(&t);
        assert_eq!((s.seconds_over_sla, s.peak_instances), (0.0, 5));
        assert!((s.mean_instances - 5.0).abs() < 1e-9);
    }

    /// The day plan adds each option's measured process start to the reader's machine start:
    /// on the step above with 30 s assumed, an option whose run measured 30 s misses the step
    /// for 60 s (as `a_step_is_missed_for_one_cold_start`), one from results without the
    /// measurement for 30 s.
    #[test]
    fn the_plan_adds_the_measured_process_start_to_the_machines() {
        let option = |run_id: &str, process_start_s| crate::cost::PlanOption {
            host: "h".into(),
            hardware_id: "hw".into(),
            run_id: run_id.into(),
            evidence: "confirmed operating point".into(),
            capacity_per_instance_qps: 100.0,
            capacity_interval_qps: None,
            p99_ms: 50.0,
            instances: 5,
            basis: "on-demand".into(),
            hourly_usd: 1.0,
            cost_per_1k_usd: 0.0,
            monthly_usd: 0.0,
            caveats: vec![],
            process_start_s,
        };
        let group = crate::cost::PlanGroup {
            group: "g".into(),
            verdict: String::new(),
            options: vec![option("measured", Some(30.0)), option("older", None)],
            excluded: vec![],
        };
        let settings = DaySettings {
            headroom: 0.0,
            scale_up_delay_s: 0.0,
            scale_down_delay_s: 120.0,
            cold_start_s: 30.0,
        };
        let t = trace(|i| if i < 600 { 100.0 } else { 500.0 }, 1800);
        let day = plan_day(&[group], &t, &settings);
        let missed = |id: &str| {
            let o = day[0].options.iter().find(|o| o.run_id == id).unwrap();
            (o.cold_start_s, o.autoscaled.seconds_over_sla)
        };
        assert_eq!(missed("measured"), (60.0, 60.0));
        assert_eq!(missed("older"), (30.0, 30.0));
    }

    /// The two cheapest measured options tie when their cost-per-day intervals overlap; an
    /// offline upper bound between them is not counted.
    #[test]
    fn overlapping_days_are_a_tie() {
        let option = |id: &str, interval, upper_bound| DayOption {
            hardware_id: id.into(),
            run_id: id.into(),
            evidence: String::new(),
            upper_bound,
            capacity_per_instance_qps: 100.0,
            hourly_usd: 1.0,
            autoscaled: scaler(0.0).simulate(&trace(|_| 1.0, 10)),
            usd_per_day: 0.0,
            usd_per_day_interval: Some(interval),
            usd_per_month: 0.0,
            cost_per_1k_usd: 0.0,
            static_peak: scaler(0.0).static_peak(&trace(|_| 1.0, 10)),
            static_usd_per_day: 0.0,
            caveats: vec![],
            cold_start_s: 0.0,
            process_start_s: None,
        };
        let tie = tie(&[
            option("a", (10.0, 12.0), false),
            option("bound", (1.0, 2.0), true),
            option("b", (11.0, 14.0), false),
        ])
        .expect("a tie");
        assert!(tie.starts_with("a and b are a statistical tie"), "{tie}");
        assert_eq!(
            super::tie(&[
                option("a", (10.0, 12.0), false),
                option("b", (12.5, 14.0), false)
            ]),
            None
        );
    }

    /// Demand rises 1 request/s every second, from 0: each time it passes a multiple of 100 one
    /// more replica starts, and serves 10 s later. Nine such crossings in 1,000 s (at 101, 201, …,
    /// 901 s), each missed for 10 s.
    #[test]
    fn a_ramp_is_missed_for_a_cold_start_at_each_new_replica() {
        let t = trace(|i| i as f64, 1000);
        let f = scaler(10.0).simulate(&t);
        assert_eq!(f.seconds_over_sla, 90.0);
        assert_eq!(f.peak_instances, 10);
        assert_eq!(scaler(0.0).simulate(&t).seconds_over_sla, 0.0);
    }

    /// A burst to 300 requests/s from 300 s to 329 s, shorter than the 60 s cold start: the two
    /// replicas it calls for serve only at 360 s, after it ended, so all 30 s of it are missed.
    /// They are stopped once the demand has wanted one replica for 120 s (at 450 s), and were
    /// billed from 300 s.
    #[test]
    fn a_burst_shorter_than_the_cold_start_is_missed_whole() {
        let t = trace(
            |i| {
                if (300..330).contains(&i) {
                    300.0
                } else {
                    100.0
                }
            },
            600,
        );
        let f = scaler(60.0).simulate(&t);
        assert_eq!(f.seconds_over_sla, 30.0);
        assert_eq!(f.peak_instances, 3);
        assert_eq!(f.instances[299], 1);
        assert_eq!(f.instances[300], 3);
        assert_eq!(f.instances[449], 3);
        assert_eq!(f.instances[450], 1);
        assert!((f.mean_instances - (300.0 + 3.0 * 150.0 + 150.0) / 600.0).abs() < 1e-9);
    }

    /// A scale-up delay holds the new replicas back: at 30 s of delay and 60 s of cold start, a
    /// step is missed for 90 s.
    #[test]
    fn a_scale_up_delay_adds_to_the_cold_start() {
        let t = trace(|i| if i < 600 { 100.0 } else { 500.0 }, 1800);
        let s = Autoscaler {
            scale_up_delay_s: 30.0,
            ..scaler(60.0)
        };
        assert_eq!(s.simulate(&t).seconds_over_sla, 90.0);
    }

    #[test]
    fn a_trace_is_read_onto_a_regular_grid() {
        let p = Path::new("trace.csv");
        let t = parse_trace(p, "timestamp,qps\n0,10\n# a comment\n2,20\n3,30\n").unwrap();
        assert_eq!(t.step_s, 1.0);
        assert_eq!(t.qps, vec![10.0, 10.0, 20.0, 30.0]);
        assert_eq!(t.requests(), 70.0);
    }

    #[test]
    fn bad_traces_name_the_line_and_column() {
        let p = Path::new("trace.csv");
        let err = |text: &str| parse_trace(p, text).unwrap_err().to_string();
        for (text, line, column, words) in [
            ("0,1\n2,1\n1,1\n", 3, "column 1", "sort the trace"),
            ("0,1\n0,2\n", 2, "column 1", "repeats"),
            ("0,1\n1,-5\n", 2, "column 2", "at least 0"),
            ("0,1\n1,many\n", 2, "column 2", "not a rate"),
            ("0,1\nnoon,3\n", 2, "column 1", "not a time"),
            ("0,1,2\n", 1, "column 1", "3 column(s)"),
            ("timestamp,qps\n", 1, "column 1", "at least two"),
            ("", 1, "column 1", "at least two"),
        ] {
            let e = err(text);
            assert!(
                e.contains(&format!(":{line}")) && e.contains(column) && e.contains(words),
                "{text:?}: {e}"
            );
        }
    }

    #[test]
    fn a_synthetic_day_follows_its_cosine_and_its_seed() {
        let d = diurnal(800.0, 100.0, 86_400.0, 86_400.0, 7);
        assert_eq!(d.qps.len(), 86_400);
        assert_eq!(d, diurnal(800.0, 100.0, 86_400.0, 86_400.0, 7));
        assert_ne!(d, diurnal(800.0, 100.0, 86_400.0, 86_400.0, 8));
        let hour = |h: usize| d.qps[h * 3600..(h + 1) * 3600].iter().sum::<f64>() / 3600.0;
        // The first hour is near the trough, the thirteenth near the peak (bursts aside).
        assert!((90.0..130.0).contains(&hour(0)), "{}", hour(0));
        assert!((750.0..900.0).contains(&hour(12)), "{}", hour(12));
        assert!(d.peak() >= 800.0);
        assert_eq!(parse_diurnal("800:100"), Ok((800.0, 100.0, 86_400.0)));
        assert_eq!(parse_diurnal("800:100:12h"), Ok((800.0, 100.0, 43_200.0)));
        assert!(parse_diurnal("100:800").is_err());
        assert!(parse_diurnal("800").is_err());
    }
}
