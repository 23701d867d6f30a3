//! `index.html`: one self-contained page (inline CSS, charts as embedded PNG data, no script,
//! nothing fetched), so it can be forwarded by mail and opened offline. Every string taken from
//! a scenario or results file is HTML-escaped.

use std::fmt::Write;

use super::charts::Chart;
use super::columns::{cells, heads};
use super::decision::{Decision, Evidence};
use super::{fmt_opt, notes, unpriced_hosts, Model, Row, Source};
use crate::cost::Catalog;
use crate::results::Status;

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

/// The notes of a row as badges (the sentence behind each in its tooltip), each badge once.
fn badges(r: &Row) -> String {
    let mut seen = std::collections::BTreeSet::new();
    notes::notes(r)
        .into_iter()
        .filter(|n| seen.insert(n.badge))
        .map(|n| {
            let class = match n.badge {
                "energy estimated" | "priced by the user's assertion" => "badge info",
                _ => "badge",
            };
            format!(
                "<span class=\"{class}\" title=\"{}\">{}</span>",
                esc(&n.detail),
                esc(n.badge)
            )
        })
        .collect()
}

/// Energy per 1k with what it covers and where each part comes from (a sensor or an estimate).
fn energy_cell(j: Option<f64>, r: &Row) -> String {
    let Some(c) = &r.cost else {
        return "—".into();
    };
    match j {
        Some(j) => format!("{j:.1} J<br><small>{}</small>", esc(&c.power.covers)),
        None => "—<br><small>no sensor, no estimate</small>".into(),
    }
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

const CSS: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1200px;color:#1d1d1f;line-height:1.45;padding:0 1em}
h1{font-size:1.7em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}th,td{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f4f4f6}td.n{text-align:right;font-variant-numeric:tabular-nums}
.rec{background:#eef6ee;border:1px solid #9c9;padding:.8em 1em;border-radius:6px}
.none{background:#fdecea;border:1px solid #d9534f;padding:.8em 1em;border-radius:6px}
.warn{background:#fff4e5;border:1px solid #e0b070;padding:.6em 1em;border-radius:6px}
figure{margin:1.5em 0}figure img{max-width:100%;border:1px solid #ddd}figcaption{font-size:.9em;color:#444}
code{background:#f4f4f6;padding:0 .2em}small{color:#555}
.badge{display:inline-block;font-size:.8em;padding:0 .4em;margin:.1em .25em .1em 0;border-radius:3px;background:#fde7c8;border:1px solid #c98a3a;white-space:nowrap}
.badge.info{background:#e3eefa;border-color:#6f9bd1}
.answer{font-size:1.05em;border-left:4px solid #2a7a2a;padding:.2em 1em;margin:1em 0}
.answer li{margin:.3em 0}";

/// The report's first lines: one sentence per model and request shape that answers which
/// hardware serves it cheapest at the reader's load and budget (the decision's answer).
fn answers(decisions: &[Decision]) -> String {
    if decisions.is_empty() {
        return String::new();
    }
    let mut h = String::from("<div class=\"answer\"><ul>");
    for d in decisions {
        let _ = write!(
            h,
            "<li><b>{}</b>: {}</li>",
            esc(&d.title()),
            esc(&d.answer())
        );
    }
    h.push_str("</ul><p><small>Each answer is argued below under <a href=\"#decision\">Which hardware</a>, with every option and exclusion.</small></p></div>\n");
    h
}

/// The whole page: the decision table, charts, valid runs, the runs that are not results, sources
/// and prices, method.
pub fn page(m: &Model, catalog: &Catalog, charts: &[Chart]) -> String {
    let (rows, sources) = (m.rows, m.sources);
    let mut h = String::new();
    let _ = writeln!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>recbench report</title><style>{CSS}</style></head><body>\n<h1>recbench: cost per 1,000 recommendations</h1>\n{}<p>Generated by recbench {} from {} results file(s). Every figure below is read from those files (listed under <a href=\"#sources\">Sources</a>) or computed from them with the cost model under <a href=\"#method\">Method</a>.</p>",
        answers(&m.decisions),
        esc(env!("CARGO_PKG_VERSION")),
        sources.len()
    );
    machines_list(&mut h, sources);
    if !m.inconsistencies.is_empty() {
        h.push_str("<div class=\"warn\"><p>These results files are not of one sweep:</p><ul>");
        for d in &m.inconsistencies {
            let _ = write!(h, "<li>{}</li>", esc(d));
        }
        h.push_str("</ul></div>\n");
    }

    // The first chart is the picture of the decision table: it goes with it, at the top.
    let (picture, rest) = match charts.split_first() {
        Some((first, rest)) if first.file == "cost_per_1k.png" => (Some(first), rest),
        _ => (None, charts),
    };
    decision_section(&mut h, m, picture);
    let (day_chart, rest): (Vec<&Chart>, Vec<&Chart>) =
        rest.iter().partition(|c| c.file == "day.png");
    if let Some(day) = &m.day {
        day_section(&mut h, m, day, day_chart.first().copied());
    }
    // The cost–quality chart goes with its table of fronts.
    let (front_chart, rest): (Vec<&Chart>, Vec<&Chart>) = rest
        .into_iter()
        .partition(|c| c.file == "cost_vs_quality.png");
    quality_section(&mut h, &m.quality, front_chart.first().copied());
    let (recall_chart, rest): (Vec<&Chart>, Vec<&Chart>) =
        rest.into_iter().partition(|c| c.file == "retrieval.png");
    if !m.retrieval.is_empty() {
        retrieval_section(&mut h, &m.retrieval, recall_chart.first().copied());
    }
    charts_section(&mut h, &rest);
    runs_section(&mut h, rows);
    not_results_section(&mut h, rows);
    sources_section(&mut h, rows, sources, catalog);
    method_section(&mut h);
    h
}

/// The decision table per (model, mode): one row per hardware option, the cheapest marked, the
/// CPU-against-GPU verdict, then the excluded configurations with their reasons.
fn decision_section(h: &mut String, m: &Model, picture: Option<&Chart>) {
    let (rows, sources, req, decisions) = (m.rows, m.sources, m.req, &m.decisions);
    let budget = req.p99_ms.map_or("each run's own SLA".to_string(), |p| {
        format!("p99 ≤ {p} ms")
    });
    let load = req.qps.map_or(
        "Give <code>--qps</code> to size a target load.".to_string(),
        |q| {
            format!(
                "Sized for {q} requests/s with {:.0}% headroom.",
                req.headroom * 100.0
            )
        },
    );
    let _ = writeln!(
        h,
        "<h2 id=\"decision\">Which hardware, at {}, for how much</h2>\n<p>Per model and request shape: each hardware option's cheapest configuration that meets the latency budget and the quality bar (parity with the fp32 reference{}), on the {} price. {load} A server-load run counts at its operating point only where a second, confirmation probe met the SLA; offline peak throughput is an upper bound for serving and is listed after every measured operating point. An offline row's p99 is what a served request would see: the time its batch takes to fill at the rate one machine receives (at the asked load, else at the row's peak), plus the batch's own p99. Options are ranked by the monthly bill at the asked load (machines × price), else by the cost per request, shown in dollars per million requests; that cost assumes a machine runs flat out. “Machines” are the instances to rent; a configuration's replicas are model copies within one machine.</p>",
        esc(&budget),
        req.min_quality.map_or(String::new(), |q| format!(
            ", and a top-10 overlap of at least {q} with the full fp32 model (<code>--min-quality</code>)"
        )),
        esc(&req.basis)
    );
    if let Some(c) = picture {
        figure(h, c);
    }
    if decisions.iter().all(|d| d.options.is_empty()) {
        h.push_str("<div class=\"warn\"><p>No configuration qualifies: none is priced and within the latency budget and the quality bar.</p>");
        let un = unpriced_hosts(rows);
        if !un.is_empty() {
            h.push_str("<p>Unpriced hosts:</p><ul>");
            for u in un {
                let _ = write!(h, "<li>{}</li>", esc(&u));
            }
            h.push_str("</ul><p>Map a host to a catalog entry with <code>recbench report --map HOST=ID</code>, or add it to a user catalog with <code>--catalog FILE</code>.</p>");
        }
        h.push_str("</div>\n");
    }
    for d in decisions {
        let _ = writeln!(h, "<h3>{}</h3>", esc(&d.title()));
        if d.options.is_empty() {
            let _ = writeln!(
                h,
                "<div class=\"none\"><p><b>{}</b></p></div>",
                esc(&d.verdict())
            );
        } else {
            let _ = writeln!(
                h,
                "<div class=\"rec\"><p><b>{}</b></p></div>",
                esc(&d.verdict())
            );
            h.push_str("<table><tr><th></th><th>hardware</th><th>configuration</th><th class=n>$ per 1M requests</th><th class=n>capacity per machine (req/s)</th><th>evidence</th><th class=n>p99 ms</th><th class=n>machines</th><th class=n>USD/month</th><th class=n>energy per 1k</th><th>notes</th></tr>\n");
            for (i, o) in d.options.iter().enumerate() {
                let s = &o.row.run.spec;
                let mark = if i == 0
                    && (o.evidence != Evidence::UpperBound
                        || d.options.iter().all(|x| x.evidence == Evidence::UpperBound))
                {
                    "<b>cheapest</b>"
                } else {
                    ""
                };
                let _ = writeln!(
                    h,
                    "<tr><td>{mark}</td><td>{} ({})</td><td>{} {}{}, batch {}, {} replica(s) per machine, {} threads<br><small><code>{}</code> in {}</small></td><td class=n>{}{}</td><td class=n>{:.1}</td><td>{}</td><td class=n>{:.1}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td>{}</td></tr>",
                    esc(&o.hardware),
                    if o.gpu { "GPU" } else { "CPU" },
                    esc(&s.backend.to_string()),
                    esc(&s.precision.to_string()),
                    esc(&super::columns::prune_suffix(s)),
                    s.batch,
                    s.instances,
                    s.threads,
                    esc(&s.id),
                    esc(&sources[o.row.source].path.display().to_string()),
                    crate::cost::usd_per_1m(o.cost_per_1k_usd),
                    o.ci_usd.map_or(String::new(), |(l, u)| format!(
                        "<br><small>{} {}–{}</small>",
                        o.interval_words(),
                        crate::cost::usd_per_1m(l),
                        crate::cost::usd_per_1m(u)
                    )),
                    o.capacity_qps,
                    esc(o.evidence.words()),
                    o.p99_ms,
                    o.instances.map_or("—".into(), |n| n.to_string()),
                    o.monthly_usd.map_or("—".into(), crate::cost::usd),
                    energy_cell(o.energy_per_1k_joules, o.row),
                    badges(o.row),
                );
            }
            h.push_str("</table>\n");
            let said: Vec<String> = d
                .options
                .iter()
                .flat_map(|o| {
                    notes::notes(o.row).into_iter().map(|n| {
                        format!(
                            "<li><b>{}</b>, {}: {}</li>",
                            esc(&o.hardware),
                            esc(n.badge),
                            esc(&n.detail)
                        )
                    })
                })
                .collect();
            if !said.is_empty() {
                let _ = writeln!(
                    h,
                    "<details><summary>What the notes say</summary><ul>{}</ul></details>",
                    said.concat()
                );
            }
        }
        if !d.excluded.is_empty() {
            // Open when they are the whole answer.
            let _ = writeln!(
                h,
                "<details{}><summary>{} configuration(s) excluded, with the reason</summary>",
                if d.options.is_empty() { " open" } else { "" },
                d.excluded.len()
            );
            h.push_str("<table><tr><th>host</th><th>configuration</th><th>reason</th></tr>\n");
            for (r, why) in &d.excluded {
                let _ = writeln!(
                    h,
                    "<tr><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                    esc(&r.host),
                    esc(&r.run.spec.id),
                    esc(why)
                );
            }
            h.push_str("</table></details>\n");
        }
    }
}

/// The other charts, embedded, with their captions.
/// The cost–quality trade: per (model, mode) and hardware option, every valid run's cost and
/// quality against the full fp32 model, the Pareto front marked.
fn quality_section(h: &mut String, groups: &[super::quality::Group], chart: Option<&Chart>) {
    h.push_str("<h2 id=\"quality\">What each lever costs in quality</h2>\n<p>Quality is measured against the <b>full model in fp32</b> (candle on the CPU), on the 16 probe queries and the demo catalog: the overlap of the top-10 items each query retrieves, the mean cosine of the pooled query embeddings, and the rank correlation (Spearman) of every catalog item's score. Parity, above, asks whether a backend computes its model; this asks what a cheaper model or precision costs in recommendations. On the <b>Pareto front</b> are the configurations that no other is both cheaper and closer to the full model than. Only valid runs are points.</p>\n");
    if let Some(c) = chart {
        figure(h, c);
    }
    if groups.is_empty() {
        h.push_str("<p>No valid, priced run has a quality figure (results written before quality was recorded have none).</p>\n");
    }
    for g in groups {
        let _ = writeln!(
            h,
            "<h3>{}: {} configurations, {} on the front</h3>",
            esc(&g.title()),
            g.points.len(),
            g.front.len()
        );
        h.push_str("<table><tr><th>front</th><th>levers</th><th class=n>$ per 1M requests</th><th class=n>top-10 overlap</th><th class=n>mean cosine</th><th class=n>score rank corr.</th><th>run</th></tr>\n");
        for (i, p) in g.points.iter().enumerate() {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td class=n>{}</td><td class=n>{:.2}</td><td class=n>{:.4}</td><td class=n>{:.4}</td><td><small><code>{}</code></small></td></tr>",
                if g.front.contains(&i) { "<b>front</b>" } else { "" },
                esc(&super::quality::lever_label(&p.row.run.spec)),
                crate::cost::usd_per_1m(p.cost_per_1k_usd),
                p.y,
                p.quality.mean_cosine,
                p.quality.score_rank_correlation,
                esc(&p.row.run.spec.id)
            );
        }
        h.push_str("</table>\n");
    }
}

/// The section in index.html, its chart first.
fn day_section(h: &mut String, m: &Model, day: &super::DayPlan, chart: Option<&Chart>) {
    let _ = writeln!(
        h,
        "<h2 id=\"day\">Over a day: the fleet each option needs as the demand moves</h2>\n<p>{} Each option is the decision's configuration for that hardware at the demand's peak; its capacity is its measured operating point within the budget (offline peaks are listed apart, as upper bounds). The interval on the cost per day comes from the ends of the capacity's interval; SLA minutes are those in which the demand was above what the serving machines serve, while new ones were starting.</p>",
        esc(&crate::cost::day::describe(day.trace, &day.settings))
    );
    if let Some(c) = chart {
        figure(h, c);
    }
    for g in &day.groups {
        let _ = writeln!(
            h,
            "<h3>{}</h3>\n<div class=\"rec\"><p><b>{}</b></p></div>",
            esc(&g.group),
            esc(&super::day::verdict(g, m))
        );
        if g.options.is_empty() {
            continue;
        }
        h.push_str("<table><tr>");
        for (i, c) in super::day::HEAD.iter().enumerate() {
            let class = if (1..8).contains(&i) { " class=n" } else { "" };
            let _ = write!(h, "<th{class}>{}</th>", esc(c));
        }
        h.push_str("</tr>\n");
        for o in &g.options {
            h.push_str("<tr>");
            for (i, c) in super::day::cells(o).iter().enumerate() {
                let class = if (1..8).contains(&i) { " class=n" } else { "" };
                let _ = write!(h, "<td{class}>{}</td>", esc(c));
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</table>\n");
    }
}

/// A retrieval sweep: per model, hardware option and catalog size, each search setting's cost,
/// recall@10 and where a request's time went (encoder against search).
fn retrieval_section(h: &mut String, groups: &[super::quality::Group], chart: Option<&Chart>) {
    h.push_str("<h2 id=\"retrieval\">Retrieval: what the catalog search costs and what it finds</h2>\n<p>A two-tower request is an encoder forward plus a search of the catalog. The catalog is shaped like a real one: the demo items' embeddings as cluster centres, items drawn around them (cosine about 0.8 with their centre). Each setting of the search (item embeddings' precision, exact scan or an index) is a point: its cost per request against its <b>recall@10</b>, the share of an exact fp32 scan's top-10 it returned for the same 100 queries. The time columns split the timed batch between the encoder forward and the search after it (medians and 99th percentiles).</p>\n");
    if let Some(c) = chart {
        figure(h, c);
    }
    for g in groups {
        let _ = writeln!(
            h,
            "<h3>{}: {} settings, {} on the front</h3>",
            esc(&g.title()),
            g.points.len(),
            g.front.len()
        );
        h.push_str("<table><tr><th>front</th><th>levers</th><th class=n>$ per 1M requests</th><th class=n>recall@10</th><th class=n>encoder p50 / p99 ms</th><th class=n>search p50 / p99 ms</th><th class=n>build s</th><th class=n>search MiB</th><th>run</th></tr>\n");
        for (i, p) in g.points.iter().enumerate() {
            let r = p.row.run.retrieval.as_ref();
            let split = |x: Option<crate::results::Split>| {
                x.map_or("–".to_string(), |x| {
                    format!("{:.2} / {:.2}", x.p50_ms, x.p99_ms)
                })
            };
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td class=n>{}</td><td class=n>{:.3}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td><small><code>{}</code></small></td></tr>",
                if g.front.contains(&i) { "<b>front</b>" } else { "" },
                esc(&super::quality::lever_label(&p.row.run.spec)),
                crate::cost::usd_per_1m(p.cost_per_1k_usd),
                p.y,
                split(r.and_then(|r| r.encode_ms)),
                split(r.and_then(|r| r.search_ms)),
                r.and_then(|r| r.build_s).map_or("–".into(), |b| format!("{b:.1}")),
                r.and_then(|r| r.bytes)
                    .map_or("–".into(), |b| format!("{:.0}", b as f64 / (1u64 << 20) as f64)),
                esc(&p.row.run.spec.id)
            );
        }
        h.push_str("</table>\n");
    }
}

fn charts_section(h: &mut String, charts: &[&Chart]) {
    h.push_str("<h2 id=\"charts\">Charts</h2>\n");
    for c in charts {
        figure(h, c);
    }
}

/// One chart, embedded, with its caption.
pub(super) fn figure(h: &mut String, c: &Chart) {
    let _ = writeln!(
        h,
        "<figure><img alt=\"{}\" src=\"data:image/png;base64,{}\"><figcaption><b>{}</b> ({}). {}</figcaption></figure>",
        esc(&if c.bars.is_empty() {
            c.title.clone()
        } else {
            format!("{}: {}", c.title, c.bars.join("; "))
        }),
        base64(&c.png),
        esc(&c.title),
        esc(&c.file),
        esc(&c.caption)
    );
}

/// The valid runs, from the run-row model plus their price.
fn runs_section(h: &mut String, rows: &[Row]) {
    let keys = [
        "load",
        "p50_ms",
        "p99_ms",
        "sequences_per_s",
        "achieved_gflops",
        "efficiency",
        "peak_rss_bytes",
        "parity_min_cosine",
    ];
    let th = |(title, numeric): (&str, bool)| {
        format!(
            "<th{}>{}</th>",
            if numeric { " class=n" } else { "" },
            esc(title)
        )
    };
    let head: Vec<String> = heads(&keys).into_iter().map(th).collect();
    let _ = writeln!(
        h,
        "<h2 id=\"runs\">Valid runs</h2>\n<table><tr><th>host</th><th>configuration</th>{}<th class=n>req/s</th><th>power</th><th>$ per 1M requests (basis)</th><th>notes</th></tr>",
        head.concat()
    );
    for r in rows.iter().filter(|r| r.run.status == Status::Ok) {
        let run = r.run;
        let tds: Vec<String> = cells(run, &keys, "—")
            .iter()
            .zip(heads(&keys))
            .map(|(c, (_, numeric))| {
                format!(
                    "<td{}>{}</td>",
                    if numeric { " class=n" } else { "" },
                    esc(c)
                )
            })
            .collect();
        let _ =
            writeln!(
            h,
            "<tr><td>{}</td><td>{}</td>{}<td class=n>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.host),
            esc(&r.label()),
            tds.concat(),
            fmt_opt(r.requests_per_s(), 1),
            esc(&match (run.power.watts, r.cost.as_ref().map(|c| &c.power)) {
                (_, Some(p)) if p.watts.is_some() => {
                    format!("{:.1} W ({})", p.watts.unwrap_or(0.0), p.covers)
                }
                (Some(w), _) => format!("{w:.1} W ({})", run.power.source),
                (None, Some(_)) => "none (no sensor, no estimate)".into(),
                (None, None) => "none (no sensor; unpriced, so no estimate)".into(),
            }),
            esc(&match r.headline() {
                Some(f) => format!("{} ({})", crate::cost::usd_per_1m(f.cost_per_1k_usd), f.basis),
                None => format!("unpriced: {}", r.mapping.detail),
            }),
            badges(r),
        );
    }
    h.push_str("</table>\n");
}

/// Invalid, failed and skipped runs with their reasons.
fn not_results_section(h: &mut String, rows: &[Row]) {
    h.push_str("<h2 id=\"not-results\">Invalid, failed and skipped runs</h2>\n<p>These are never drawn or priced.</p><table><tr><th>host</th><th>status</th><th>run</th><th>reason</th></tr>\n");
    let mut any = false;
    for r in rows.iter().filter(|r| r.run.status != Status::Ok) {
        any = true;
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            esc(&r.host),
            esc(r.run.status.name()),
            esc(&r.run.spec.id),
            esc(r.run.reason.as_deref().unwrap_or(""))
        );
    }
    if !any {
        h.push_str("<tr><td colspan=4>none</td></tr>\n");
    }
    h.push_str("</table>\n");
}

/// The results files with their machines, and the catalog prices used.
/// Where the results were measured: one line per machine, with the build of recbench, the
/// sweeps and when they started, so a reader sees at once which figures come from where.
fn machines_list(h: &mut String, sources: &[Source]) {
    let machines = super::machines(sources);
    let _ = write!(
        h,
        "<p id=\"machines\"><b>Measured on {} machine{}</b> (each row below names its machine; details under <a href=\"#sources\">Sources</a>):</p><ul>",
        machines.len(),
        if machines.len() == 1 { "" } else { "s" }
    );
    for m in &machines {
        let _ = write!(
            h,
            "<li><b>{}</b>: {}</li>",
            esc(&m.label),
            esc(&m.summary())
        );
    }
    h.push_str("</ul>\n");
}

fn sources_section(h: &mut String, rows: &[Row], sources: &[Source], catalog: &Catalog) {
    h.push_str("<h2 id=\"sources\">Sources</h2>\n<table><tr><th>results file (SHA-256)</th><th>scenario</th><th>host</th><th>CPU</th><th>GPUs</th><th>memory</th><th>OS / kernel</th><th>fp32 GEMM ceiling</th><th>idle power</th><th>recbench</th></tr>\n");
    for (s, label) in sources.iter().zip(super::machine_labels(sources)) {
        let e = &s.file.environment;
        let inv = &e.inventory;
        let _ = writeln!(
            h,
            "<tr><td><code>{}</code><br><small>{}</small></td><td>{}{}</td><td>{}<br><small>{}</small></td><td>{}<br><small>{} logical / {} physical cores; {}</small></td><td>{}</td><td>{}</td><td>{}<br><small>{}</small></td><td>{}</td><td>{}</td><td>{} ({})</td></tr>",
            esc(&s.path.display().to_string()),
            esc(&s.sha256),
            esc(&s.file.scenario.name),
            if s.file.scenario.quick { " (--quick)" } else { "" },
            esc(&label),
            esc(inv.virtualization.as_deref().unwrap_or("")),
            esc(inv.cpu_model.as_deref().unwrap_or("unknown")),
            inv.logical_cores,
            inv.physical_cores.map_or("?".into(), |c| c.to_string()),
            esc(&inv.cpu_flags.join(" ")),
            esc(&if inv.gpus.is_empty() { format!("none ({})", inv.gpu_probe) } else { inv.gpus.iter().map(|g| g.name.clone()).collect::<Vec<_>>().join(", ") }),
            fmt_opt(inv.memory_bytes.map(|b| b as f64 / (1u64 << 30) as f64), 1) + " GiB",
            esc(inv.os.as_deref().unwrap_or("")),
            esc(inv.kernel.as_deref().unwrap_or("")),
            esc(&e.gemm_ceiling.iter().map(|g| format!("{:.1} GFLOP/s at {} threads", g.gflops, g.threads)).collect::<Vec<_>>().join("; ")),
            esc(&e.idle_power.as_ref().and_then(|p| p.watts).map_or("no sensor".into(), |w| format!("{w:.1} W"))),
            esc(&e.recbench_version),
            esc(&e.git_commit),
        );
    }
    h.push_str("</table>\n");
    let mut used: Vec<&str> = rows
        .iter()
        .filter_map(|r| r.cost.as_ref().map(|c| c.hardware_id.as_str()))
        .collect();
    used.sort();
    used.dedup();
    h.push_str("<h3>Prices used</h3><table><tr><th>catalog id</th><th>hardware</th><th>prices (USD/hour)</th><th>source</th><th>date</th><th>notes</th></tr>\n");
    for id in &used {
        if let Some(e) = catalog.get(id) {
            let prices: Vec<String> = [
                ("on-demand", e.on_demand_usd_per_hour),
                ("reserved 1y", e.reserved_1y_usd_per_hour),
                ("spot", e.spot_usd_per_hour),
            ]
            .iter()
            .filter_map(|(n, p)| p.map(|p| format!("{n} {p}")))
            .chain(e.purchase_usd.map(|p| match e.lifetime_years {
                Some(y) => format!("purchase ${p} over {y} years"),
                None => format!("purchase ${p} (no lifetime given)"),
            }))
            .collect();
            let _ = writeln!(
                h,
                "<tr><td><code>{}</code></td><td>{} {} vCPU {} GiB {}</td><td>{}</td><td>{}</td><td>{} ({})</td><td>{}</td></tr>",
                esc(&e.id),
                esc(&e.provider),
                e.vcpus,
                e.memory_gib,
                esc(&if e.gpu_count > 0 { format!("{} × {}", e.gpu_count, e.gpu_model) } else { e.cpu_model.clone() }),
                esc(&prices.join("; ")),
                esc(&e.price_source),
                esc(&e.price_date),
                esc(&e.price_date_kind),
                esc(&format!("{} {}", e.notes, e.price_note)),
            );
        }
    }
    if used.is_empty() {
        h.push_str("<tr><td colspan=6>no run was priced</td></tr>\n");
    }
    let _ = writeln!(
        h,
        "</table><p><small>Catalog files: {}.</small></p>",
        esc(&catalog
            .files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", "))
    );
}

/// How every figure was measured and priced.
fn method_section(h: &mut String) {
    h.push_str("<h2 id=\"method\">Method</h2><ul>\n<li>Each run executes in its own worker process. Inputs are tokenised before timing; every sequence is exactly <code>seq_len</code> tokens of real catalog text. The timed region of each run is stated in its results entry (encoder forward, plus scoring against item embeddings and top-k in two-tower mode, or the relevance head and top-k in cross-encoder mode). Two-tower scoring runs where the encoder runs (on the GPU for a GPU run; only the top-k ids and scores come back to the host) unless the scenario asked for host scoring; each run's <code>scoring:</code> note gives its share of the iteration and the encoder forward timed apart.</li>\n<li>Warm-up, then measurement until both a minimum duration and a minimum number of iterations are met, bounded by a maximum duration. Latency percentiles are linear-interpolated; offline and single-stream runs with a coefficient of variation above 10% are flagged unstable (server-load runs: see Notes below).</li>\n<li>Server load: seeded Poisson arrivals, dynamic batching, latency from each request's scheduled arrival (no coordinated omission). The operating point is the highest probed rate whose p99 is within the SLA and whose achieved rate is within 2% of the offered rate; its latency, throughput and power come from a confirmation probe at that rate.</li>\n<li>Parity: every run's embeddings of 16 probe queries and of the demo catalog are compared with candle fp32 on the CPU; fp32 must agree within 1e-4 (max abs), fp16/bf16 at cosine ≥ 0.999, int8 at cosine ≥ 0.99 with top-10 overlap ≥ 0.9. Runs that fail are <i>invalid</i> and not shown as results.</li>\n<li>Cost per 1k requests = 1000 × hourly price / 3600 / requests per second, at the SLA operating point when the run has one, else at peak offline throughput (labelled). Tables show it as dollars per million requests. Its interval is a 95% bootstrap interval of the iteration times for an offline peak, and for a server-load operating point the search bracket (the rate that met the SLA and the next probed rate, which did not), widened where a probe's 95% block-bootstrap interval of its p99 straddles the SLA: from the highest rate that met the SLA beyond doubt to the lowest that missed it beyond doubt. A GPU run on a multi-GPU instance is charged its per-GPU share. Owned hardware: purchase price over its lifetime plus energy × electricity price × PUE.</li>\n<li>Energy per 1k requests = average power × 1000 / requests per second. Power comes from RAPL or NVML counters when the host has them (measured; always preferred). Every energy figure says what it covers: RAPL measures the CPU package, NVML the GPU board only; for a GPU run measured by NVML the host CPU that fed it is added as a CCF estimate where the catalog entry names the host's processor (<i>GPU board (NVML) + host CPU (CCF estimate)</i>, badge <i>energy estimated</i>), else the figure says the host CPU is not counted. Without a sensor it is <i>estimated</i> and labelled so: from the run's CPU TDP at run time (<code>estimated (TDP)</code>), or from the catalog entry the host is priced as (<code>estimated (CCF)</code>) with the Cloud Carbon Footprint model — vCPUs × (min + utilisation × (max − min)) watts per vCPU for the entry's processor, the utilisation being the run's measured busy threads / vCPUs; for a GPU, CCF's per-GPU min/max at its default 50% utilisation (GPU utilisation is not recorded), or the catalog's board power (an upper bound) where CCF has no coefficient. Compute only: no memory, storage, network or PUE. The coefficients, each with its source file and commit, are in <code>catalog/energy.toml</code>; each estimate's arithmetic is in the notes (badge <i>energy estimated</i>) and in runs.csv. Where neither is possible energy is empty, never 0.</li>\n<li>Notes: <i>unstable</i> — offline and single-stream runs whose iteration times have a coefficient of variation above 10%; server-load runs whose capacity bracket (the SLA held at one rate and failed at the next) is more than 10% wide or whose confirmation probe and search disagree on p99 by more than 20% of the SLA (under server load the spread of latencies is queueing, not noise). <i>marginal operating point</i> — the confirmation probe missed the SLA at a rate the search had passed. <i>few samples</i> — fewer than 100 latency samples, or stopped at the time limit. <i>unpriced</i>, <i>priced by the user's assertion</i> (<code>--map</code> or the scenario's <code>[cost] hardware</code>), <i>kernel fallback</i> (a backend recorded that it fell back to another kernel or device), <i>energy estimated</i>, <i>price unsure</i> (the catalog flags the price as unconfirmed by a primary source; its note says why), <i>host-bound</i> (a GPU run that scored the catalog on the host CPU, <code>scoring = \"host\"</code> or a results file from before device scoring, and spent at least half of its median iteration doing so: the figure measures the host more than the GPU).</li>\n</ul>\n</body></html>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_base64() {
        assert_eq!(
            esc("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
        assert_eq!(base64(b"Man"), "TWFu");
        assert_eq!(base64(b"Ma"), "TWE=");
        assert_eq!(base64(b"M"), "TQ==");
        assert_eq!(base64(b""), "");
    }
}
