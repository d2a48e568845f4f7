//! The isolation run: a healthy tenant's load alone, then beside a noisy tenant's endpoints.

use super::*;

/// One healthy phase of an isolation run, as it went.
struct PhaseRun {
    published: Published,
    timed_out: bool,
    /// When the wait ended (ns since `t0`).
    ended_ns: u64,
}

/// Publishes the healthy load under the ids of `p` and waits (at most --timeout) for it.
async fn healthy_phase(ctx: &Ctx<'_>, p: u64) -> Result<PhaseRun> {
    let publishing = ctx.publish(
        Events::healthy(ctx.plan.clone(), p, &ctx.args.event_type),
        ctx.pace(),
    );
    let expected = ctx.plan.expected_healthy();
    let phase = ctx.tally.phase(p);
    let timed_out = wait_until(ctx.args.timeout, || {
        phase.healthy.load(Ordering::Acquire) >= expected
    })
    .await;
    let ended_ns = ctx.t0.elapsed().as_nanos() as u64;
    Ok(PhaseRun {
        published: finished(publishing).await?,
        timed_out,
        ended_ns,
    })
}

/// What Redis was asked between two readings, when both exist.
fn calls_between(a: &Option<Calls>, b: &Option<Calls>, own: &Calls) -> Option<Calls> {
    Some(observe::calls_delta(a.as_ref()?, b.as_ref()?, own))
}

fn per(n: Option<u64>, d: u64) -> Option<f64> {
    (d > 0).then_some(round(n? as f64 / d as f64, 2))
}

/// A healthy phase's figures; `deliveries_per_s` counts first copies from its first publish
/// to its last first copy (to the end of the wait when it timed out).
fn phase_json(
    ctx: &Ctx<'_>,
    p: u64,
    run: &PhaseRun,
    cpu: Option<f64>,
    calls: &Option<Calls>,
) -> Value {
    let phase = ctx.tally.phase(p);
    let expected = ctx.plan.expected_healthy();
    let delivered = phase.healthy.load(Ordering::Acquire);
    // Cut by --timeout, the phase lasted until the wait ended, not until its last delivery.
    let last = if run.timed_out {
        run.ended_ns
    } else {
        phase.last_healthy_ns.load(Ordering::Acquire)
    };
    let elapsed = last.saturating_sub(run.published.first_ns) as f64 / 1e9;
    let publish_s = run.published.last_ns.saturating_sub(run.published.first_ns) as f64 / 1e9;
    let total_calls = calls.as_ref().map(|c| c.values().sum::<u64>());
    json!({
        "expected": expected,
        "delivered": delivered,
        "missing": expected.saturating_sub(delivered),
        "duplicates": phase.duplicates.load(Ordering::Acquire),
        "slow_delivered": (ctx.plan.slow > 0).then(|| phase.slow.load(Ordering::Acquire)),
        "timed_out": run.timed_out,
        "publish_s": round(publish_s, 3),
        "elapsed_s": round(elapsed, 3),
        "deliveries_per_s": round(delivered as f64 / elapsed.max(1e-9), 0),
        "latency_ms": percentiles(phase.latencies()),
        "webhookd_cpu_s": cpu,
        "redis_calls": total_calls,
        "redis_calls_per_delivery": per(total_calls, delivered),
    })
}

/// The isolation run: the healthy load alone, then the noisy tenant's events until webhookd has
/// read them all, then the same healthy load again beside them; one JSON line with both.
pub(crate) async fn measure_isolation(ctx: &Ctx<'_>) -> Result<Value> {
    let args = ctx.args;
    let (noisy, noisy_tally) = ctx.noisy.clone().expect("isolation runs have a noisy side");
    let (pid, redis_pid) = (ctx.pid, ctx.redis_pid);
    let none = Calls::new();
    let metrics: Vec<(&str, &str)> = observe::EXPLAINING
        .iter()
        .chain(observe::ISOLATION)
        .copied()
        .collect();

    // (2) Alone.
    let calls0 = observe::command_calls(&ctx.nodes).await;
    let cpu0 = Cpu::read(pid, redis_pid);
    let alone = healthy_phase(ctx, 0).await?;
    let cpu1 = Cpu::read(pid, redis_pid);
    let calls1 = observe::command_calls(&ctx.nodes).await;
    let metrics_alone = ctx.counters(&metrics).await;

    // (3) The noisy events, until webhookd has read and absorbed them, then a settle time.
    let noisy_started = Instant::now();
    let publishing = ctx.publish(
        noisy.load(),
        Pace {
            rate: None,
            ..ctx.pace()
        },
    );
    let publish_timed_out = wait_until(args.timeout, || publishing.is_finished()).await;
    let noisy_published = if publish_timed_out {
        publishing.abort();
        None
    } else {
        Some(finished(publishing).await?)
    };
    let mut own = Calls::new();
    let mut progress = None;
    let read_deadline = noisy_started + args.timeout;
    // Read is not yet absorbed: entries stay pending until each of their deliveries has a fate
    // (parked, retried, delivered). Absorbed once few stay pending (the entries of attempts
    // still in flight), or their number has not moved for 2 s.
    let mut last_pending: Option<(u64, Instant)> = None;
    let read_timed_out = loop {
        let p = observe::stream_progress(&ctx.conn, &ctx.stream, &args.group).await;
        *own.entry("xinfo|groups".into()).or_default() += 1;
        *own.entry("xlen".into()).or_default() += 1;
        let pending = p.as_ref().and_then(|(g, _)| g.pending);
        let stable = match (pending, last_pending) {
            (Some(n), Some((m, since))) if n == m => since.elapsed() >= Duration::from_secs(2),
            (Some(n), _) => {
                last_pending = Some((n, Instant::now()));
                false
            }
            _ => false,
        };
        let absorbed = pending.is_some_and(|n| n <= 16) || stable;
        let done = absorbed && p.as_ref().is_some_and(|(g, len)| g.read_all(*len));
        progress = p.or(progress);
        if done && noisy_published.is_some() {
            break false;
        }
        if Instant::now() >= read_deadline {
            break true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let read_s = noisy_started.elapsed().as_secs_f64();
    tokio::time::sleep(args.noisy_settle).await;
    let cpu2 = Cpu::read(pid, redis_pid);
    let calls2 = observe::command_calls(&ctx.nodes).await;
    let metrics_noisy = ctx.counters(&metrics).await;
    let noisy_at_beside = noisy_tally.snapshot();

    // (4) Beside.
    let beside = healthy_phase(ctx, 1).await?;
    let cpu3 = Cpu::read(pid, redis_pid);
    let calls3 = observe::command_calls(&ctx.nodes).await;
    let rss_peak = pid.and_then(|p| procfs::status_mib(p, "VmHWM"));
    let rss_end = pid.and_then(|p| procfs::status_mib(p, "VmRSS"));
    let metrics_beside = ctx.counters(&metrics).await;
    let noisy_after_beside = noisy_tally.snapshot();
    // Late copies still count as duplicates of their phase.
    tokio::time::sleep(args.linger).await;

    let calls_alone = calls_between(&calls0, &calls1, &none);
    let calls_noisy = calls_between(&calls1, &calls2, &own);
    let calls_beside = calls_between(&calls2, &calls3, &none);
    let calls_total = calls_between(&calls0, &calls3, &own);
    let healthy_total = ctx.tally.phase(0).healthy.load(Ordering::Acquire)
        + ctx.tally.phase(1).healthy.load(Ordering::Acquire);
    let alone_json = phase_json(
        ctx,
        0,
        &alone,
        delta(cpu0.webhookd, cpu1.webhookd),
        &calls_alone,
    );
    let mut beside_json = phase_json(
        ctx,
        1,
        &beside,
        delta(cpu2.webhookd, cpu3.webhookd),
        &calls_beside,
    );
    beside_json["redis_top5"] = json!(calls_beside.as_ref().map(|c| observe::top_calls(c, 5)));
    beside_json["noisy_received_at_end"] = noisy_after_beside;
    let rate = |v: &Value| v["deliveries_per_s"].as_f64().unwrap_or(0.0);
    let ratio = (rate(&alone_json) > 0.0).then(|| round(rate(&beside_json) / rate(&alone_json), 3));
    let (group, len) = progress.unzip();
    let noisy_calls = calls_noisy.as_ref().map(|c| c.values().sum::<u64>());
    let whole_cpu = delta(cpu0.webhookd, cpu3.webhookd);
    let healthy_calls = |c: &Option<Calls>| c.as_ref().map(|c| c.values().sum::<u64>());
    let timed_out = alone.timed_out || beside.timed_out || read_timed_out || publish_timed_out;

    Ok(json!({
        "scenario": args.scenario,
        "mode": "isolation",
        "events": args.events,
        "endpoints": args.endpoints,
        "tenants": args.tenants,
        "slow_endpoints": args.slow_endpoints,
        "rate": (args.rate > 0.0).then_some(args.rate),
        "noisy": {
            "kind": noisy.kind.name(),
            "endpoints": noisy.endpoints,
            "events": noisy.events,
            "expected": noisy.expected(),
            "tenant": noisy.tenant,
            "same_tenant": noisy.same_tenant,
            "delay_s": (noisy.kind == Kind::Slow).then(|| noisy.delay.as_secs_f64()),
            "listeners": args.noisy_listeners,
        },
        "ratio": ratio,
        "timed_out": timed_out,
        "alone": alone_json,
        "noisy_phase": {
            "publish_s": noisy_published.as_ref().map(|p| round(p.last_ns.saturating_sub(p.first_ns) as f64 / 1e9, 3)),
            "publish_timed_out": publish_timed_out,
            "read_s": round(read_s, 3),
            "read_timed_out": read_timed_out,
            "stream_length": len,
            "entries_read": group.and_then(|g| g.entries_read),
            "lag": group.and_then(|g| g.lag),
            "pending": group.and_then(|g| g.pending),
            "settle_s": args.noisy_settle.as_secs_f64(),
            "webhookd_cpu_s": delta(cpu1.webhookd, cpu2.webhookd),
            "redis_calls": noisy_calls,
            "noisy_received": noisy_at_beside,
        },
        "beside": beside_json,
        "unexpected": ctx.tally.unexpected.load(Ordering::Acquire),
        "redis_calls_per_healthy_delivery": {
            "alone": per(healthy_calls(&calls_alone), ctx.tally.phase(0).healthy.load(Ordering::Acquire)),
            "beside": per(healthy_calls(&calls_beside), ctx.tally.phase(1).healthy.load(Ordering::Acquire)),
            "total": per(healthy_calls(&calls_total), healthy_total),
        },
        "webhookd": pid.map(|p| json!({
            "pid": p,
            "cpu_s": whole_cpu,
            "rss_peak_mib": rss_peak.map(|v| round(v, 1)),
            "rss_end_mib": rss_end.map(|v| round(v, 1)),
        })),
        "webhookd_metrics": {
            "after_alone": metrics_alone,
            "after_noisy_read": metrics_noisy,
            "after_beside": metrics_beside,
        },
        "register_s": round(ctx.register_s, 3),
        "bench_cpu_s": delta(cpu0.bench, cpu3.bench),
        "redis_cpu_s": delta(cpu0.redis, cpu3.redis),
        "nofile_limit": ctx.nofile,
        "loadavg_1m_at_start": ctx.loadavg,
    }))
}
