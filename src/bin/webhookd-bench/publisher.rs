//! The producer side: envelopes with a send stamp, appended with pipelined `XADD`s, either
//! as fast as Redis takes them or at a fixed rate paced by a short tick.

use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use webhookd::db::conn::Conn;
use webhookd::db::shards::Shards;

use super::plan::Plan;

pub struct Pace {
    /// Events per second; `None` publishes as fast as possible.
    pub rate: Option<f64>,
    /// XADDs per pipeline at full speed.
    pub batch: usize,
    /// Rate mode: how often the due events are sent.
    pub tick: Duration,
    /// Envelope size to pad to (0: no padding).
    pub body_bytes: usize,
    /// Event i carries `data.key` = `k{i % K}` (0: no key).
    pub keys: u64,
}

type Naming = Box<dyn Fn(u64) -> String + Send + Sync>;

/// What to publish: `count` events of one type, and the id and tenant of event `i`.
pub struct Events {
    pub count: u64,
    pub event_type: String,
    pub id: Naming,
    pub tenant: Naming,
}

impl Events {
    /// The plan's load, under the ids of `phase`.
    pub fn healthy(plan: Arc<Plan>, phase: u64, event_type: &str) -> Events {
        let tenants = plan.clone();
        Events {
            count: plan.events,
            event_type: event_type.to_string(),
            id: Box::new(move |i| plan.event_id(phase, i)),
            tenant: Box::new(move |i| tenants.tenant(i)),
        }
    }
}

/// What the publisher did, in ns since the run's clock origin.
pub struct Published {
    pub first_ns: u64,
    pub last_ns: u64,
    pub count: u64,
    pub bytes: u64,
}

struct Encoder {
    events: Events,
    t0: Instant,
    created_at: i64,
    body_bytes: usize,
    keys: u64,
    buf: String,
}

impl Encoder {
    /// One envelope; `sent_at_ns` comes first in `data` so the receiver finds it early.
    fn envelope(&mut self, i: u64) -> &str {
        let sent = self.t0.elapsed().as_nanos() as u64;
        self.buf.clear();
        let _ = write!(
            self.buf,
            r#"{{"id":"{}","type":"{}","tenant":"{}","created_at":{},"data":{{"sent_at_ns":{sent},"uid":"msg-{i}","to":"rcpt{i}@example.com""#,
            (self.events.id)(i),
            self.events.event_type,
            (self.events.tenant)(i),
            self.created_at,
        );
        if self.keys > 0 {
            let _ = write!(self.buf, r#","key":"k{}""#, i % self.keys);
        }
        // `,"pad":"` + `"` + `}}` around the padding.
        const AROUND: usize = 11;
        if self.body_bytes > self.buf.len() + AROUND {
            let pad = self.body_bytes - self.buf.len() - AROUND;
            self.buf.push_str(r#","pad":""#);
            self.buf.push_str(&"x".repeat(pad));
            self.buf.push('"');
        }
        self.buf.push_str("}}");
        &self.buf
    }
}

/// Each event goes to its tenant's shard (SPEC 1).
pub async fn run(
    mut conn: Conn,
    shards: Shards,
    events: Events,
    t0: Instant,
    pace: Pace,
) -> redis::RedisResult<Published> {
    let total = events.count;
    let mut enc = Encoder {
        events,
        t0,
        created_at: webhookd::support::clock::now_secs(),
        body_bytes: pace.body_bytes,
        keys: pace.keys,
        buf: String::with_capacity(pace.body_bytes.max(256)),
    };
    let mut out = Published {
        first_ns: 0,
        last_ns: 0,
        count: 0,
        bytes: 0,
    };
    let started = Instant::now();
    let mut tick = tokio::time::interval(pace.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while out.count < total {
        let upto = match pace.rate {
            None => (out.count + pace.batch as u64).min(total),
            Some(rate) => {
                tick.tick().await;
                // Everything due by now (the first event at once), in one pipeline.
                ((started.elapsed().as_secs_f64() * rate) as u64 + 1).min(total)
            }
        };
        if upto <= out.count {
            continue;
        }
        if out.count == 0 {
            out.first_ns = t0.elapsed().as_nanos() as u64;
        }
        let mut pipe = redis::pipe();
        for i in out.count..upto {
            let stream = shards.keys_of_tenant(&(enc.events.tenant)(i));
            let env = enc.envelope(i);
            out.bytes += env.len() as u64;
            pipe.cmd("XADD")
                .arg(stream.stream())
                .arg("*")
                .arg("event")
                .arg(env)
                .ignore();
        }
        pipe.query_async::<()>(&mut conn).await?;
        out.count = upto;
        out.last_ns = t0.elapsed().as_nanos() as u64;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_are_valid_and_padded_to_size() {
        let plan = Arc::new(Plan {
            events: 1,
            endpoints: 1,
            tenants: 1,
            slow: 0,
            phases: 2,
            tag: "b1".into(),
            matches: true,
        });
        for size in [0, 4096] {
            let mut enc = Encoder {
                events: Events::healthy(plan.clone(), 1, "outbound.delivered"),
                t0: Instant::now(),
                created_at: 1,
                body_bytes: size,
                keys: 0,
                buf: String::new(),
            };
            let env = enc.envelope(0).to_string();
            let ev = webhookd::event::parse(env.as_bytes(), 1 << 20).expect("valid envelope");
            assert_eq!(ev.id, "b1-1");
            assert_eq!(ev.tenant, "bench_t0");
            if size > 0 {
                assert_eq!(env.len(), size);
            }
        }
    }
}
