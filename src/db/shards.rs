//! The input stream's shards (SPEC 1): which shard a tenant's events go to, every shard's
//! keys, and dead-letter ids that name their shard.

use crate::config::Config;
use crate::db::keys::Keys;

#[derive(Clone, Debug)]
pub struct Shards {
    base: Keys,
    /// Every shard's keys, made once: publishing looks one up per event.
    each: std::sync::Arc<[Keys]>,
}

impl Shards {
    pub fn new(base: Keys, count: u32) -> Shards {
        let count = count.max(1);
        Shards {
            each: (0..count).map(|i| base.shard(i, count)).collect(),
            base,
        }
    }

    /// `stream.shards` under `redis.key_prefix` and `stream.key`.
    pub fn of(config: &Config) -> Shards {
        Shards::new(
            Keys::new(&config.redis.key_prefix, &config.stream.key),
            config.stream.shards,
        )
    }

    pub fn count(&self) -> u32 {
        self.each.len() as u32
    }

    /// The shard producers put a tenant's events on: CRC-32 (IEEE) of its UTF-8 bytes mod N.
    pub fn of_tenant(&self, tenant: &str) -> u32 {
        crc32fast::hash(tenant.as_bytes()) % self.count()
    }

    /// Shard `shard`'s keys (`shard` < `count()`).
    pub fn keys(&self, shard: u32) -> &Keys {
        &self.each[shard as usize]
    }

    /// The keys of the shard a tenant's events go to.
    pub fn keys_of_tenant(&self, tenant: &str) -> &Keys {
        self.keys(self.of_tenant(tenant))
    }

    /// Every shard's keys, in order.
    pub fn all(&self) -> impl Iterator<Item = &Keys> + '_ {
        self.each.iter()
    }

    /// The keys shared by all shards (the registry, tokens, the retry queue).
    pub fn base(&self) -> &Keys {
        &self.base
    }
}

/// A dead letter's id: `<shard>:<entry id>` in a sharded stream, the entry id otherwise.
pub fn letter_id(shard: Option<u32>, entry: &str) -> String {
    match shard {
        Some(i) => format!("{i}:{entry}"),
        None => entry.to_string(),
    }
}

/// The shard and entry id a dead letter's id names (`None` for the shard: unsharded).
pub fn parse_letter_id(id: &str) -> (Option<u32>, &str) {
    match id.split_once(':') {
        Some((shard, entry)) => match shard.parse() {
            Ok(i) => (Some(i), entry),
            Err(_) => (None, id),
        },
        None => (None, id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_goes_to_crc32_of_its_name_mod_n() {
        let s = Shards::new(Keys::new("webhookd:", "events"), 16);
        assert_eq!(s.of_tenant("acct_42"), crc32fast::hash(b"acct_42") % 16);
        // The well-known check value: CRC-32 of "123456789" is 0xCBF43926.
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
        assert_eq!(s.of_tenant("123456789"), 0xCBF4_3926 % 16);
        assert_eq!(
            Shards::new(Keys::new("p:", "e"), 1).of_tenant("anything"),
            0
        );
    }

    #[test]
    fn letter_ids_name_their_shard() {
        assert_eq!(letter_id(Some(3), "1-0"), "3:1-0");
        assert_eq!(letter_id(None, "1-0"), "1-0");
        assert_eq!(parse_letter_id("3:1-0"), (Some(3), "1-0"));
        assert_eq!(parse_letter_id("1-0"), (None, "1-0"));
    }
}
