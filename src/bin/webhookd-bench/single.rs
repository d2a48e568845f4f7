//! The default run: the load once, measured from the first publish to the last delivery.

use super::*;

/// The default run: the load once, measured from the first publish to the last delivery.
pub(crate) async fn measure_single(ctx: &Ctx<'_>) -> Result<Value> {
    let (args, plan, tally) = (ctx.args, &ctx.plan, &ctx.tally);
    let (pid, redis_pid) = (ctx.pid, ctx.redis_pid);
    let by_node_before = observe::calls_by_node(&ctx.nodes).await;
    let calls_before = observe::command_calls(&ctx.nodes).await;
    let before = Cpu::read(pid, redis_pid);
    let switches_before = pid.and_then(procfs::context_switches);
    let publishing = ctx.publish(
        Events::healthy(plan.clone(), 0, &args.event_type),
        ctx.pace(),
    );
    let expected = plan.expected_healthy();
    let phase = tally.phase(0);
    let timed_out = wait_until(args.timeout, || {
        phase.healthy.load(Ordering::Acquire) >= expected
    })
    .await;
    let after = Cpu::read(pid, redis_pid);
    let switches_after = pid.and_then(procfs::context_switches);
    // webhookd's connections: every node's clients now, less those before it started.
    let connections = observe::connected_clients(&ctx.nodes)
        .await
        .zip(ctx.clients_before)
        .map(|(now, before)| now.saturating_sub(before));
    let by_node_after = observe::calls_by_node(&ctx.nodes).await;
    let calls_after = observe::command_calls(&ctx.nodes).await;
    let settled = observe::settled_calls(&ctx.nodes, Duration::from_secs(10)).await;
    let settled_cpu = Cpu::read(pid, redis_pid);
    let rss_peak = pid.and_then(|p| procfs::status_mib(p, "VmHWM"));
    let rss_end = pid.and_then(|p| procfs::status_mib(p, "VmRSS"));
    tokio::time::sleep(args.linger).await;
    let counters = ctx.counters(observe::EXPLAINING).await;
    let published = finished(publishing).await?;

    let delivered = phase.healthy.load(Ordering::Acquire);
    let last = phase.last_healthy_ns.load(Ordering::Acquire);
    let elapsed = last.saturating_sub(published.first_ns) as f64 / 1e9;
    let publish_s = published.last_ns.saturating_sub(published.first_ns) as f64 / 1e9;
    let webhookd_cpu = delta(before.webhookd, after.webhookd);
    let per_delivery = |n: u64| round(n as f64 / delivered.max(1) as f64, 3);
    let switches = switches_before.zip(switches_after).map(|((v0, n0), (v1, n1))| {
        json!({"voluntary": per_delivery(v1.saturating_sub(v0)), "involuntary": per_delivery(n1.saturating_sub(n0))})
    });
    // Redis commands per published event, server-wide (only meaningful on a quiet Redis).
    let redis_calls = match (&calls_before, calls_after) {
        (Some(b), Some(a)) => {
            let mut m = serde_json::Map::new();
            for (cmd, n) in a {
                let per = (n - b.get(&cmd).copied().unwrap_or(0)) as f64 / args.events as f64;
                if per >= 0.005 && cmd != "info" {
                    m.insert(cmd, json!(round(per, 3)));
                }
            }
            Some(m)
        }
        _ => None,
    };
    // Everything each delivery cost, the attempt log written after it included: commands
    // (less the publisher's XADDs) and webhookd's CPU from the first publish until the
    // commands settle.
    let settled = match (&calls_before, settled) {
        (Some(b), Some((a, waited))) => {
            let mut made = observe::calls_delta(b, &a, &Calls::new());
            made.remove("xadd");
            let cpu = delta(before.webhookd, settled_cpu.webhookd);
            Some(json!({
                "waited_s": round(waited.as_secs_f64(), 2),
                "redis_calls_per_delivery": round(observe::total(&made) as f64 / delivered.max(1) as f64, 3),
                "webhookd_cpu_us_per_delivery": cpu.map(|c| round(c * 1e6 / delivered.max(1) as f64, 3)),
                "redis_cpu_s": delta(before.redis, settled_cpu.redis),
            }))
        }
        _ => None,
    };
    Ok(json!({
        "scenario": args.scenario,
        "events": args.events,
        "endpoints": args.endpoints,
        "tenants": args.tenants,
        "slow_endpoints": args.slow_endpoints,
        "rate": (args.rate > 0.0).then_some(args.rate),
        "envelope_bytes": published.bytes / published.count.max(1),
        "verify": args.verify,
        "expected": expected,
        "delivered": delivered,
        "missing": expected.saturating_sub(delivered),
        "duplicates": phase.duplicates.load(Ordering::Acquire),
        "unexpected": tally.unexpected.load(Ordering::Acquire),
        "bad_signatures": args.verify.then(|| tally.bad_signatures.load(Ordering::Acquire)),
        "slow_delivered": (args.slow_endpoints > 0).then(|| phase.slow.load(Ordering::Acquire)),
        "slow_expected": (args.slow_endpoints > 0).then(|| plan.expected_slow()),
        "timed_out": timed_out,
        "register_s": round(ctx.register_s, 3),
        "publish_s": round(publish_s, 3),
        "publish_per_s": round(published.count as f64 / publish_s.max(1e-9), 0),
        "elapsed_s": round(elapsed, 3),
        "deliveries_per_s": round(delivered as f64 / elapsed.max(1e-9), 0),
        "latency_ms": percentiles(phase.latencies()),
        "webhookd": pid.map(|p| json!({
            "pid": p,
            "cpu_s": webhookd_cpu,
            "cpu_us_per_delivery": webhookd_cpu.map(|c| round(c * 1e6 / delivered.max(1) as f64, 3)),
            "context_switches_per_delivery": switches,
            "rss_peak_mib": rss_peak.map(|v| round(v, 1)),
            "rss_end_mib": rss_end.map(|v| round(v, 1)),
        })),
        "webhookd_counters": counters,
        "bench_cpu_s": delta(before.bench, after.bench),
        "redis_cpu_s": delta(before.redis, after.redis),
        "redis_calls_per_event": redis_calls,
        "redis_calls_by_node": by_node_before.zip(by_node_after).map(|(b, a)| {
            b.iter().zip(&a).map(|(b, a)| observe::total(a) - observe::total(b)).collect::<Vec<_>>()
        }),
        "redis_connections_opened": connections,
        "settled": settled,
        "loadavg_1m_at_start": ctx.loadavg,
    }))
}
