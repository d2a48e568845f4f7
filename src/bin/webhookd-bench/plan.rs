//! Who gets what: event `i` belongs to tenant `i % T`, endpoint `n` to tenant `n % T`, and
//! an endpoint receives every event of its tenant when its filters match the event type.
//! Endpoints `0..slow` are the slow ones. The same load may be published in several phases
//! (isolation runs: "alone" and "beside"), each under fresh event ids: event `i` of phase `p`
//! has the sequence number `p × events + i`, so phase 0 keeps the plain ids `<tag>-<i>`.

/// The shape of one run, shared by the publisher, the registrar and the receiver.
pub struct Plan {
    pub events: u64,
    pub endpoints: u32,
    pub tenants: u32,
    pub slow: u32,
    /// How many times the load is published, each time under fresh ids (at least 1).
    pub phases: u64,
    /// Event ids are `<tag>-<seq>`; endpoint ids `<tag>_ep<n>`.
    pub tag: String,
    /// Whether the endpoints' filters match the published type at all.
    pub matches: bool,
}

impl Plan {
    /// Events per tenant, rounded up: the width of each endpoint's row of "seen" bits.
    pub fn rounds(&self) -> u64 {
        self.events.div_ceil(self.tenants as u64)
    }

    pub fn tenant(&self, t: u64) -> String {
        format!("bench_t{}", t % self.tenants as u64)
    }

    /// The id of event `i` of `phase`.
    pub fn event_id(&self, phase: u64, i: u64) -> String {
        format!("{}-{}", self.tag, phase * self.events + i)
    }

    pub fn endpoint_id(&self, n: u32) -> String {
        format!("{}_ep{n}", self.tag)
    }

    /// `<tag>-<seq>` → (phase, i).
    pub fn event_seq(&self, id: &str) -> Option<(u64, u64)> {
        let seq: u64 = id
            .strip_prefix(self.tag.as_str())?
            .strip_prefix('-')?
            .parse()
            .ok()?;
        let phase = seq / self.events.max(1);
        (phase < self.phases.max(1)).then(|| (phase, seq % self.events.max(1)))
    }

    pub fn is_slow(&self, n: u32) -> bool {
        n < self.slow
    }

    /// The bit of delivery (endpoint n, event i), if that delivery is expected at all.
    pub fn delivery_bit(&self, n: u32, i: u64) -> Option<u64> {
        let t = self.tenants as u64;
        let expected =
            self.matches && n < self.endpoints && i < self.events && i % t == n as u64 % t;
        expected.then(|| n as u64 * self.rounds() + i / t)
    }

    fn events_of_tenant(&self, t: u64) -> u64 {
        let tenants = self.tenants as u64;
        self.events / tenants + u64::from(t < self.events % tenants)
    }

    fn expected_of(&self, endpoints: std::ops::Range<u32>) -> u64 {
        if !self.matches {
            return 0;
        }
        endpoints
            .map(|n| self.events_of_tenant(n as u64 % self.tenants as u64))
            .sum()
    }

    /// Deliveries expected at the healthy endpoints.
    pub fn expected_healthy(&self) -> u64 {
        self.expected_of(self.slow.min(self.endpoints)..self.endpoints)
    }

    /// Deliveries expected at the slow endpoints.
    pub fn expected_slow(&self) -> u64 {
        self.expected_of(0..self.slow.min(self.endpoints))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(events: u64, endpoints: u32, tenants: u32) -> Plan {
        Plan {
            events,
            endpoints,
            tenants,
            slow: 0,
            phases: 1,
            tag: "b1".into(),
            matches: true,
        }
    }

    #[test]
    fn every_expected_delivery_has_its_own_bit() {
        let p = plan(10, 6, 4);
        let mut bits = std::collections::HashSet::new();
        for n in 0..6 {
            for i in 0..10 {
                if let Some(b) = p.delivery_bit(n, i) {
                    assert!(b < 6 * p.rounds());
                    assert!(bits.insert(b));
                }
            }
        }
        assert_eq!(bits.len() as u64, p.expected_healthy());
        assert_eq!(p.expected_healthy(), 3 + 3 + 2 + 2 + 3 + 3);
    }

    #[test]
    fn ids_round_trip() {
        let p = plan(10, 1, 1);
        assert_eq!(p.event_id(0, 7), "b1-7");
        assert_eq!(p.event_seq(&p.event_id(0, 7)), Some((0, 7)));
        assert_eq!(p.event_seq("b2-7"), None);
        // A second phase would be out of range of a one-phase plan.
        assert_eq!(p.event_seq("b1-17"), None);
        assert_eq!(p.event_seq("b1-nz3"), None);
    }

    #[test]
    fn phases_use_fresh_ids_of_the_same_tenants() {
        let p = Plan {
            phases: 2,
            ..plan(10, 2, 3)
        };
        for i in 0..10 {
            let (a, b) = (p.event_id(0, i), p.event_id(1, i));
            assert_ne!(a, b);
            assert_eq!(p.event_seq(&a), Some((0, i)));
            assert_eq!(p.event_seq(&b), Some((1, i)));
        }
        assert_eq!(p.event_seq("b1-20"), None);
    }
}
