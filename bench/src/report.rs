//! The human-readable report and the plots of one run.

use super::*;

fn fmt_opt(v: Option<f64>, prec: usize) -> String {
    v.map_or_else(|| "—".to_string(), |x| format!("{x:.prec$}"))
}

pub(super) fn print_report(r: &Results) {
    let m = &r.machine;
    println!("\n# amrpc-bench{}", if r.quick { " --quick (counts only)" } else { "" });
    println!(
        "machine: nproc {}, {}, Linux {}, {}; N = {}, {} runs",
        m.nproc, m.cpu, m.kernel, m.rustc, r.n, r.runs
    );
    if !r.ops.is_empty() {
        println!("\n## ns/op (median [min–max] over the runs), allocations/op\n");
        println!("| variant | runtime | ops/run | median | min–max | spread | allocs/op | B/op | load |");
        println!("|---|---|---|---|---|---|---|---|---|");
        for o in &r.ops {
            let s = &o.ns_per_op;
            println!(
                "| {} | {} | {} | {} | {}–{} | {:.0} % | {} | {} | {:.2}→{:.2} |",
                o.variant,
                o.runtime,
                o.ops_per_run,
                svg::fmt_val(s.median, "ns"),
                svg::fmt_val(s.min, "ns"),
                svg::fmt_val(s.max, "ns"),
                s.spread_pct(),
                fmt_opt(o.allocs_per_op, 1),
                fmt_opt(o.alloc_bytes_per_op, 0),
                o.load.0,
                o.load.1,
            );
        }
        println!("\n## wire (through the proxy; timed section per op unless noted)\n");
        println!(
            "| variant | runtime | B/op | B/op incl. setup | payload B/op | framing B/op | c→s msgs/op | s→c msgs/op | pushes/op | round trips/op | calls | setup B |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
        for o in &r.ops {
            if let Some(w) = &o.wire {
                println!(
                    "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {} |",
                    o.variant,
                    o.runtime,
                    w.bytes_per_op,
                    w.bytes_per_op_total,
                    w.app_bytes_per_op,
                    w.framing_per_op,
                    w.c2s_per_op,
                    w.s2c_per_op,
                    w.pushes_per_op,
                    w.turns_per_op,
                    w.calls.map_or_else(|| "—".into(), |c| c.to_string()),
                    w.setup_bytes,
                );
            }
        }
        let find = |kind: Kind, rt: &str, proxied: bool| {
            r.ops
                .iter()
                .find(|o| o.kind == kind && o.runtime == rt && o.proxied == proxied)
        };
        println!("\n## ratios\n");
        for rt in ["1 thread", "2 threads"] {
            for proxied in [true, false] {
                if let (Some(a), Some(g)) = (find(Kind::Amrpc, rt, proxied), find(Kind::Grpc, rt, proxied)) {
                    println!(
                        "- {rt}, {}: amrpc / tonic ns/op = {:.3} (target ≤ 0.5)",
                        if proxied { "proxy" } else { "direct" },
                        a.ns_per_op.median / g.ns_per_op.median
                    );
                }
            }
            if let (Some(a), Some(e)) = (find(Kind::Amrpc, rt, false), find(Kind::Echo, rt, false)) {
                println!(
                    "- {rt}, direct: amrpc / raw WS echo ns/op = {:.3} (target ≤ 1.3)",
                    a.ns_per_op.median / e.ns_per_op.median
                );
            }
        }
    }
    if !r.fanout.is_empty() {
        println!("\n## fan-out (worker mutation → last client's mirror) and idle-session memory\n");
        println!(
            "| clients | mutation | to last p50 | to last p99 | max | median client p50 / p99 | server RSS before → idle | per idle session | load |"
        );
        println!("|---|---|---|---|---|---|---|---|---|");
        for f in &r.fanout {
            for (what, l) in [("op (cascade)", &f.op), ("toggle (1 transition)", &f.toggle)] {
                println!(
                    "| {} | {what} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} / {:.2} ms | {} → {} kB | {:.1} KiB | {:.2}→{:.2} |",
                    f.clients,
                    l.p50_ms,
                    l.p99_ms,
                    l.max_ms,
                    l.median_client_p50_ms,
                    l.median_client_p99_ms,
                    f.rss_before_kb,
                    f.rss_idle_kb,
                    f.bytes_per_session / 1024.0,
                    f.load.0,
                    f.load.1
                );
            }
        }
    }
    if let Some(h) = &r.heap {
        println!(
            "\nidle sessions on a current-thread server: {} sessions, {:.1} KiB heap and {:.1} live allocations per session; RSS {:.1} KiB per session",
            h.clients,
            h.heap_bytes_per_session / 1024.0,
            h.allocs_per_session,
            h.rss_bytes_per_session / 1024.0
        );
    }
    for (title, res, skipped) in [
        ("browser", &r.browser, &r.browser_skipped),
        ("node", &r.node, &r.node_skipped),
    ] {
        if let Some(b) = res {
            println!(
                "\n## {title} ({})\n\n| | µs per op (median round) | rounds, ms |\n|---|---|---|\n| amrpc ({} ops per round) | {:.1} | {} |\n| raw WebSocket echo, {} B (the floor) | {:.1} | {} |\n\namrpc / floor: {:.2}× (median of the per-round ratios); {:.0} remote mutations/s",
                b.runtime,
                b.n,
                b.amrpc_us_per_op,
                join_ms(&b.amrpc_ms),
                b.request_bytes,
                b.echo_us_per_op,
                join_ms(&b.echo_ms),
                b.ratio_to_floor,
                b.per_sec
            );
            if let (Some(a), Some(e)) = (b.amrpc_cpu_us_per_op, b.echo_cpu_us_per_op) {
                println!("{title}'s own CPU per op: amrpc {a:.1} µs, echo {e:.1} µs");
            }
        }
        if let Some(s) = skipped {
            println!("\n## {title}\n\nskipped: {s}");
        }
    }
    if let Some(c) = &r.connect {
        println!(
            "\n## connection setup ({} cycles × {} rounds per kind, {} in flight)\n",
            c.cycles, c.rounds, c.concurrency
        );
        println!(
            "| kind | cycles/s, median [rounds] | cycle p50 / p99 / max ms | server CPU µs/cycle | clients' CPU µs/cycle | server capacity, 2 cores | failures |"
        );
        println!("|---|---|---|---|---|---|---|");
        for k in &c.kinds {
            let rounds: Vec<String> = k.per_sec.iter().map(|r| format!("{r:.0}")).collect();
            println!(
                "| {} | {:.0} [{}] | {:.2} / {:.2} / {:.2} | {:.0} | {:.0} | {:.0}/s | {} |",
                k.kind,
                k.per_sec_median,
                rounds.join(", "),
                k.cycle.p50_ms,
                k.cycle.p99_ms,
                k.cycle.max_ms,
                k.server_cpu_us,
                k.client_cpu_us,
                k.server_capacity_per_sec,
                k.failures
            );
        }
        println!(
            "\namrpc / floor: {:.2} (median of the per-round ratios)",
            c.ratio_to_floor
        );
    }
    if let Some(l) = &r.load {
        print_load(l);
    }
    if !r.sections.is_empty() {
        println!("\n## load per section\n");
        println!(
            "| section | seconds | load at start (1/5/15 min) | load at end | other processes, cores | steal, cores |"
        );
        println!("|---|---|---|---|---|---|");
        for s in &r.sections {
            println!(
                "| {} | {:.1} | {:.2} / {:.2} / {:.2} | {:.2} | {:.2} | {:.2} |",
                s.section,
                s.secs,
                s.load_start[0],
                s.load_start[1],
                s.load_start[2],
                s.load_end[0],
                s.other_cores,
                s.steal_cores
            );
        }
    }
}

fn print_load(l: &load::LoadResult) {
    let h = &l.handshakes;
    let b = &l.burst;
    let p = &l.probe;
    println!(
        "\n## load: {} concurrent WebSocket clients ({} server threads, max_sessions {}, fd limit {})\n",
        l.clients, l.server_threads, l.max_sessions, l.fd_limit
    );
    println!("| what | figure |");
    println!("|---|---|");
    println!(
        "| handshakes | {} ok, {} failed {:?}, in {:.2} s ({} at a time); per client p50 {:.2} / p99 {:.2} / max {:.2} ms; server sessions {} |",
        h.ok,
        h.failed,
        h.failures_by_code,
        h.secs,
        l.concurrency,
        h.connect.p50_ms,
        h.connect.p99_ms,
        h.connect.max_ms,
        h.server_sessions
    );
    println!(
        "| server RSS | {} kB → {} kB idle = {:.1} KiB per session; at the end {} kB (peak {} kB) |",
        l.rss_before_kb,
        l.rss_idle_kb,
        l.bytes_per_session / 1024.0,
        l.rss_end_kb,
        l.hwm_end_kb
    );
    println!(
        "| client process RSS | {} kB ({:.1} KiB per client) |",
        l.client_rss_kb,
        l.client_rss_kb as f64 / l.clients.max(1) as f64
    );
    for (what, f) in [
        ("op (cascade)", &l.fanout_op),
        ("toggle (1 transition)", &l.fanout_toggle),
    ] {
        println!(
            "| fan-out, {what}, to the last client | p50 {:.2} / p99 {:.2} / max {:.2} ms ({} samples; median client p50 {:.2} ms) |",
            f.p50_ms, f.p99_ms, f.max_ms, f.mutations, f.median_client_p50_ms
        );
    }
    println!(
        "| bursts | {} × {} worker mutations back to back ({} failed), {:.2} ms on the worker (p50); {} mirrors converged after each |",
        b.rounds, b.mutations, b.failed, b.worker.p50_ms, b.converged
    );
    println!(
        "| convergence, last mutation → last mirror | p50 {:.2} / max {:.2} ms over the bursts (from the first mutation: p50 {:.2} / max {:.2} ms; median mirror p50 {:.2} ms) |",
        b.converge.p50_ms,
        b.converge.max_ms,
        b.converge_from_first.p50_ms,
        b.converge_from_first.max_ms,
        b.median_client.p50_ms
    );
    println!(
        "| final clock | {} mirrors show exactly the worker's clock ({} states) |",
        b.exact_final_clock, b.clock_states
    );
    println!(
        "| probe client | connected in {:.2} ms; {} round trips ({} during the bursts, {} queued behind one), {} failed; RTT p50 {:.2} / p99 {:.2} / max {:.2} ms |",
        p.connect_ms, p.round_trips, p.during_burst, p.queued, p.failures, p.rtt.p50_ms, p.rtt.p99_ms, p.rtt.max_ms
    );
    println!(
        "| client connecting as the bursts start | {} in {:.2} ms |",
        if p.late_connected { "connected" } else { "FAILED" },
        p.late_connect_ms
    );
    println!(
        "| end | {} sessions; worker errors {}, successes {}; {:.1} s |",
        l.sessions_end, l.errors, l.successes, l.secs
    );
}

pub(super) fn write_plots(opts: &Opts, r: &Results) -> Result<(), String> {
    std::fs::create_dir_all(&opts.svg_dir).map_err(|e| e.to_string())?;
    let m = &r.machine;
    let sub = format!(
        "{} × {}, {}; N = {}, {} runs",
        m.nproc,
        m.cpu.split(' ').take(3).collect::<Vec<_>>().join(" "),
        m.rustc.split(' ').take(2).collect::<Vec<_>>().join(" "),
        r.n,
        r.runs
    );
    let color = |k: Kind| match k {
        Kind::Amrpc => "#2b7bb9",
        Kind::Grpc => "#e08a1e",
        Kind::Machine | Kind::MachineSpawn => "#4c9a52",
        Kind::Plain | Kind::PlainSpawn => "#999",
        Kind::Echo => "#7a5ea8",
    };
    if !r.ops.is_empty() {
        let bars: Vec<svg::Bar> = r
            .ops
            .iter()
            .map(|o| svg::Bar {
                label: format!("{}, {}", o.variant, o.runtime),
                median: o.ns_per_op.median,
                min: o.ns_per_op.min,
                max: o.ns_per_op.max,
                color: color(o.kind),
            })
            .collect();
        let s = svg::hbars_log("subscribe → get → process: time per op", &sub, "ns", &bars);
        std::fs::write(opts.svg_dir.join("ops.svg"), s).map_err(|e| e.to_string())?;
        let mut rows: Vec<svg::Stack> = r
            .ops
            .iter()
            .filter(|o| o.runtime == "2 threads")
            .filter_map(|o| {
                o.wire.as_ref().map(|w| svg::Stack {
                    label: o.variant.replace(" (proxy)", ""),
                    parts: vec![
                        ("message payload", w.app_bytes_per_op, color(o.kind)),
                        ("framing (WebSocket / HTTP/2 headers)", w.framing_per_op, "#bbb"),
                    ],
                })
            })
            .collect();
        rows.push(svg::Stack {
            label: "upstream aRPC, Go (reported)".into(),
            parts: vec![("upstream, TCP payload incl. handshake", 114.9, "#8ab")],
        });
        rows.push(svg::Stack {
            label: "upstream gRPC, Go (reported)".into(),
            parts: vec![("upstream, TCP payload incl. handshake", 340.1, "#8ab")],
        });
        let s = svg::hbars_stacked(
            "bytes on the wire per op (both directions, TCP payload)",
            "timed section through the metering proxy; upstream's figures are from its README (spec arpc.md §7.3)",
            "B",
            &rows,
            Some(40.0),
        );
        std::fs::write(opts.svg_dir.join("wire.svg"), s).map_err(|e| e.to_string())?;
    }
    if !r.fanout.is_empty() {
        let pts = |f: fn(&FanoutSummary) -> f64| r.fanout.iter().map(|x| (x.clients as f64, f(x))).collect();
        let series = vec![
            svg::Series {
                name: "op, last client p99".into(),
                color: "#c0392b",
                points: pts(|x| x.op.p99_ms),
            },
            svg::Series {
                name: "op, last client p50".into(),
                color: "#e08a1e",
                points: pts(|x| x.op.p50_ms),
            },
            svg::Series {
                name: "toggle, last client p99".into(),
                color: "#2b7bb9",
                points: pts(|x| x.toggle.p99_ms),
            },
            svg::Series {
                name: "toggle, last client p50".into(),
                color: "#4c9a52",
                points: pts(|x| x.toggle.p50_ms),
            },
        ];
        let s = svg::lines_logx(
            "fan-out: worker mutation → the clients' mirrors see it",
            &format!(
                "{sub}; server in its own process ({} runtime threads), clients in another; {} ops + {} toggles per point",
                opts.server_threads, opts.mutations, opts.mutations
            ),
            "WebSocket clients (log scale)",
            "ms",
            &series,
            Some(50.0),
        );
        std::fs::write(opts.svg_dir.join("fanout.svg"), s).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn join_ms(v: &[f64]) -> String {
    v.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(", ")
}
