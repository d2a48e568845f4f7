//! The one place Redis key names are built.
//!
//! Keys that one script or transaction touches together share a hash tag (`{retry}`,
//! `{endpoints}`), so the layout works on Redis Cluster too.

#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
    stream_key: String,
    /// The input stream's shard these keys name, when `stream.shards` > 1 (SPEC 1).
    shard: Option<u32>,
    stream: String,
}

impl Keys {
    pub fn new(prefix: &str, stream_key: &str) -> Self {
        Keys {
            prefix: prefix.to_string(),
            stream_key: stream_key.to_string(),
            shard: None,
            stream: format!("{prefix}{stream_key}"),
        }
    }

    /// The keys of shard `i`, whose per-shard keys share its hash tag `{i}`; with `shards`
    /// = 1, the unsharded names.
    pub fn shard(&self, i: u32, shards: u32) -> Keys {
        if shards <= 1 {
            return Keys::new(&self.prefix, &self.stream_key);
        }
        Keys {
            shard: Some(i),
            stream: format!("{}{}:{{{i}}}", self.prefix, self.stream_key),
            ..self.clone()
        }
    }

    /// The shard these keys name (`None`: the unsharded stream).
    pub fn shard_index(&self) -> Option<u32> {
        self.shard
    }

    /// The input stream producers `XADD` to.
    pub fn stream(&self) -> &str {
        &self.stream
    }
    /// Never written: a blocking read of it (which waits out its timeout) is the consumer's
    /// pause between light reads, kept by Redis (`Dedup::read_checked`). Shares the stream's
    /// slot when it is sharded.
    pub fn stream_pause(&self) -> String {
        format!("{}:pause", self.stream)
    }
    /// Invalid entries, set aside with their reason.
    pub fn invalid(&self) -> String {
        format!("{}:invalid", self.stream)
    }
    /// The dead-letter stream.
    pub fn dlq(&self) -> String {
        match self.shard {
            None => format!("{}dlq", self.prefix),
            Some(i) => format!("{}dlq:{{{i}}}", self.prefix),
        }
    }
    /// Sorted set of one endpoint's dead-letter ids by their time (ms): its count, and its
    /// oldest first when it is over `dlq.max_per_endpoint`.
    pub fn dlq_of(&self, endpoint_id: &str) -> String {
        format!("{}:endpoint:{endpoint_id}", self.dlq())
    }
    /// A tenant's dead letters (`retry::dlq::tenant_index`): padded ids, in the stream's order.
    pub fn dlq_tenant(&self, tenant: &str) -> String {
        format!("{}:tenant:{tenant}", self.dlq())
    }
    /// How far the tenant indexes have caught up with the stream: `up_to`, `caught_up`.
    pub fn dlq_index_state(&self) -> String {
        format!("{}:tenant-index", self.dlq())
    }
    /// The highest `stream.shards` this Redis has been used with, so streams no longer
    /// written to are still read until empty.
    pub fn shards_seen(&self) -> String {
        format!("{}{}:shards", self.prefix, self.stream_key)
    }
    /// The duplicate check's keys share this hash tag: its own, or the shard's.
    fn dedup_tag(&self) -> String {
        match self.shard {
            None => format!("{}{{dedup}}", self.prefix),
            Some(_) => format!("{}:dedup", self.stream),
        }
    }
    /// The duplicate check's segment table (`ingest/dedup_core.lua`): segment id → its start,
    /// count and number of hashes.
    pub fn dedup_segments(&self) -> String {
        format!("{}:v3:segments", self.dedup_tag())
    }
    /// What the duplicate check's hashes are named from: `<base><segment>:<hash>`.
    pub fn dedup_base(&self) -> String {
        format!("{}:v3:", self.dedup_tag())
    }
    /// The previous layout's segment table, whose ids (SHA-256 fingerprints) are checked
    /// until its last segment expires.
    pub fn dedup_segments_v2(&self) -> String {
        format!("{}:segments", self.dedup_tag())
    }
    /// What the previous layout's hashes are named from.
    pub fn dedup_base_v2(&self) -> String {
        format!("{}:", self.dedup_tag())
    }
    /// Present once this layout of the duplicate check is in use.
    pub fn dedup_version(&self) -> String {
        format!("{}:version", self.dedup_tag())
    }
    /// Present (for one window) while ids remembered in the earlier one-key-per-id layout may be alive.
    pub fn dedup_legacy_mark(&self) -> String {
        format!("{}:legacy", self.dedup_tag())
    }
    /// The earlier layout: each event id in a key of its own, naming its owner entry.
    pub fn dedup_legacy(&self, tenant: &str, event_id: &str) -> String {
        format!("{}dedup:{tenant}:{event_id}", self.prefix)
    }
    /// `SCAN MATCH` pattern of `dedup_legacy` keys.
    pub fn dedup_legacy_pattern(&self) -> String {
        let mut p = String::new();
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                p.push('\\');
            }
            p.push(c);
        }
        p + "dedup:*"
    }
    /// The retry state's hash tag: `{retry}` unsharded; with shards, shard `i`'s tag `{i}`,
    /// so an endpoint's jobs, backlog and circuit stay in one slot (`retry/shards.rs`).
    fn retry_tag(&self) -> String {
        match self.shard {
            None => format!("{}{{retry}}", self.prefix),
            Some(i) => format!("{}retry:{{{i}}}", self.prefix),
        }
    }
    /// Ordered delivery (`retry::order`): each key queue's name starts with this.
    pub fn order_prefix(&self) -> String {
        format!("{}:order:", self.retry_tag())
    }
    /// Sorted set of the key queues with deliveries, by when they became active.
    pub fn order_active(&self) -> String {
        format!("{}:order-active", self.retry_tag())
    }
    /// Hash of key queue → the head released into the due set.
    pub fn order_released(&self) -> String {
        format!("{}:order-released", self.retry_tag())
    }
    /// Sorted set of delivery ids by due time (ms).
    pub fn retry_due(&self) -> String {
        format!("{}:due", self.retry_tag())
    }
    /// Hash of delivery id → serialized delivery.
    pub fn retry_jobs(&self) -> String {
        format!("{}:jobs", self.retry_tag())
    }
    /// Hash of body ref → a body the retry queue's jobs name (`retry/bodies.rs`).
    pub fn retry_bodies(&self) -> String {
        format!("{}:bodies", self.retry_tag())
    }
    /// Hash of body ref → how many jobs name it.
    pub fn retry_body_refs(&self) -> String {
        format!("{}:bodyrefs", self.retry_tag())
    }
    /// Hash of delivery id → a job this build could not read, kept as it was.
    pub fn retry_quarantine(&self) -> String {
        format!("{}:quarantine", self.retry_tag())
    }
    /// Hash of endpoint id → its circuit, for circuits that are not closed (`breaker`).
    pub fn circuits(&self) -> String {
        format!("{}:circuits", self.retry_tag())
    }
    /// Hash of endpoint id → consecutive failed attempts (absent: none).
    pub fn breaker_failures(&self) -> String {
        format!("{}:failures", self.retry_tag())
    }
    /// Sorted set of one endpoint's parked deliveries (ids) by the time their schedule ends.
    pub fn parked(&self, endpoint_id: &str) -> String {
        format!("{}:park:{endpoint_id}", self.retry_tag())
    }
    /// Sorted set of endpoints with parked deliveries, by when a replica should next look.
    pub fn parked_index(&self) -> String {
        format!("{}:parked", self.retry_tag())
    }
    /// Hash of endpoint id → endpoint record.
    pub fn endpoints(&self) -> String {
        format!("{}{{endpoints}}:all", self.prefix)
    }
    /// Sorted set (all scores 0, ordered by id) of one tenant's endpoint ids.
    pub fn tenant_endpoints(&self, tenant: &str) -> String {
        format!("{}{{endpoints}}:tenant:{tenant}", self.prefix)
    }
    /// Stream of endpoint ids that changed; every replica tails it.
    pub fn endpoints_log(&self) -> String {
        format!("{}{{endpoints}}:log", self.prefix)
    }
    /// Present while Redis holds the registry: its absence means Redis lost its data.
    pub fn registry_mark(&self) -> String {
        format!("{}{{endpoints}}:mark", self.prefix)
    }
    /// Hash of endpoint id → ms since which every attempt failed.
    pub fn failing_since(&self) -> String {
        format!("{}{{endpoints}}:failing", self.prefix)
    }
    /// Hash of sha256(token) → token record.
    pub fn tokens(&self) -> String {
        format!("{}tokens", self.prefix)
    }
    /// Hash of one tenant's token ids → sha256(token).
    pub fn tenant_tokens(&self, tenant: &str) -> String {
        format!("{}tokens:tenant:{tenant}", self.prefix)
    }
    /// Hash of sha256(token) → Unix ms it was last used.
    pub fn tokens_used(&self) -> String {
        format!("{}tokens:used", self.prefix)
    }
    /// A portal link not used yet: its token's digest → what it grants (expires with it).
    pub fn portal_link(&self, digest_hex: &str) -> String {
        format!("{}portal:link:{digest_hex}", self.prefix)
    }
    /// The unused portal links a token minted: link digest → its expiry (Unix ms).
    pub fn portal_links_of(&self, minter_hex: &str) -> String {
        format!("{}portal:links-of:{minter_hex}", self.prefix)
    }
    /// A portal session: its cookie's digest → what it grants (expires with it).
    pub fn portal_session(&self, digest_hex: &str) -> String {
        format!("{}portal:session:{digest_hex}", self.prefix)
    }
    /// Capped list of one endpoint's recent attempts, newest first.
    pub fn attempts(&self, endpoint_id: &str) -> String {
        // One allocation of the exact size: `format!` costs several times the copy, per delivery.
        [&self.prefix, "attempts:", endpoint_id].concat()
    }
    /// Hash of one endpoint's attempt counts and latency histogram for the hour starting at
    /// `hour` (Unix seconds).
    pub fn stats(&self, endpoint_id: &str, hour: i64) -> String {
        let mut hour_text = itoa::Buffer::new();
        let hour = hour_text.format(hour);
        [&self.prefix, "stats:", endpoint_id, ":", hour].concat()
    }
    /// The operator view's hour starting at `hour` (Unix seconds), over every endpoint: a hash
    /// of `ok:{tenant}` and `failed:{tenant}` attempt counts, and a sorted set of endpoint id →
    /// its summed latency (ms). (Earlier builds also kept `overview:attempts:{hour}`; it
    /// expires on its own.)
    pub fn overview_tenants(&self, hour: i64) -> String {
        format!("{}overview:tenants:{hour}", self.prefix)
    }
    pub fn overview_latency(&self, hour: i64) -> String {
        format!("{}overview:latency:{hour}", self.prefix)
    }
    /// The key that marks webhookd's own events on the input stream (`notice::mark`).
    pub fn notice_mark(&self) -> String {
        format!("{}notice:mark", self.prefix)
    }
    /// Hash of endpoint id → deliveries in flight on one replica (expires unless refreshed).
    pub fn in_flight(&self, replica: &str) -> String {
        format!("{}inflight:{replica}", self.prefix)
    }
    /// Written every second by each replica's readiness probe (expires in 10 s): Redis is
    /// ready only if it takes writes.
    pub fn write_probe(&self) -> String {
        format!("{}probe", self.prefix)
    }
    /// Sorted set of replica names by when they last published their in-flight counts (ms).
    pub fn replicas(&self) -> String {
        format!("{}replicas", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_key_names_hold_for_the_default_prefix() {
        let k = Keys::new("webhookd:", "events");
        assert_eq!(k.stream(), "webhookd:events");
        assert_eq!(k.invalid(), "webhookd:events:invalid");
        assert_eq!(k.dlq(), "webhookd:dlq");
    }

    #[test]
    fn per_delivery_key_names_are_those_earlier_builds_wrote() {
        let k = Keys::new("webhookd:", "events");
        assert_eq!(k.attempts("ep_1"), "webhookd:attempts:ep_1");
        assert_eq!(
            k.stats("ep_1", 1764799200),
            "webhookd:stats:ep_1:1764799200"
        );
        assert_eq!(k.stats("ep_1", -3600), "webhookd:stats:ep_1:-3600");
    }

    #[test]
    fn spec_shard_key_names() {
        let k = Keys::new("webhookd:", "events");
        let s = k.shard(15, 16);
        assert_eq!(s.stream(), "webhookd:events:{15}");
        assert_eq!(s.invalid(), "webhookd:events:{15}:invalid");
        assert_eq!(s.dlq(), "webhookd:dlq:{15}");
        for key in [
            s.dlq_of("ep"),
            s.dedup_segments(),
            s.dedup_base(),
            s.retry_due(),
            s.retry_jobs(),
            s.circuits(),
            s.parked("ep"),
            s.parked_index(),
        ] {
            assert!(key.contains("{15}"), "{key}");
        }
        let one = k.shard(0, 1);
        assert_eq!(one.stream(), "webhookd:events");
        assert_eq!(one.dlq(), "webhookd:dlq");
        assert_eq!(one.retry_due(), "webhookd:{retry}:due");
        assert_eq!(s.retry_due(), "webhookd:retry:{15}:due");
    }

    #[test]
    fn keys_used_together_share_a_hash_tag() {
        let k = Keys::new("t1:", "events");
        assert!(k.retry_due().contains("{retry}") && k.retry_jobs().contains("{retry}"));
        for key in [
            k.endpoints(),
            k.tenant_endpoints("a"),
            k.endpoints_log(),
            k.failing_since(),
        ] {
            assert!(key.contains("{endpoints}"), "{key}");
        }
    }
}
